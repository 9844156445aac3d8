"""Storage backends. Chosen in one place: :mod:`sluicegate.wiring`."""
