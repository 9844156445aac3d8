"""Implementations of :class:`sluicegate.transport.Transport` over real HTTP clients."""
