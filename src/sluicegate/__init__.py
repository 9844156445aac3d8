"""sluicegate: guardrails between a journey orchestrator and the external systems it calls.

from sluicegate import Gate

async with Gate.open("data") as gate:
    result = await gate.call(org="acme", sandbox="prod", journey="welcome",
                             service="action", method="POST", url="https://api.example.org/send")
    if result.outcome is Outcome.CAPPED: ...
"""

from importlib.metadata import version as _version

from sluicegate.call import Call, CallArgs, Service
from sluicegate.clock import Clock, SystemClock
from sluicegate.configs import ConfigKind, ConfigRecord, RuleBook
from sluicegate.errors import (
    AdobeCode,
    ConfigError,
    ConfigNotFound,
    EgressBlocked,
    InvalidCall,
    InvalidConfig,
    InvalidInput,
    SluicegateError,
    StorageError,
    TooManyCalls,
    TransportError,
    UnknownHost,
)
from sluicegate.gate import Gate
from sluicegate.handle import CallHandle, CallState
from sluicegate.outcomes import AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.queues import ThrottlingQueue
from sluicegate.rules import Validation
from sluicegate.settings import DefaultCap, Settings
from sluicegate.throttle import QueueState
from sluicegate.transport import Request, Response, Sending, Transport

__version__ = _version("sluicegate")

__all__ = [
    "AdobeCode",
    "AttemptError",
    "Call",
    "CallArgs",
    "CallHandle",
    "CallResult",
    "CallState",
    "Clock",
    "ConfigError",
    "ConfigKind",
    "ConfigNotFound",
    "ConfigRecord",
    "DefaultCap",
    "EgressBlocked",
    "ErrorKind",
    "Gate",
    "InvalidCall",
    "InvalidConfig",
    "InvalidInput",
    "Outcome",
    "QueueState",
    "Request",
    "Response",
    "RuleBook",
    "Sending",
    "Service",
    "Settings",
    "SluicegateError",
    "StorageError",
    "SystemClock",
    "ThrottlingQueue",
    "TooManyCalls",
    "Transport",
    "TransportError",
    "UnknownHost",
    "Validation",
]
