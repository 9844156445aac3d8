"""The wire format of the configuration API, for its OpenAPI: response models, error
bodies and the documented request bodies of both kinds.

Responses go through these models (FastAPI validates every answer against them), so the
published schema is true of every response. Elements keep their payload fields open
(``extra="allow"``): the core's :meth:`~sluicegate.records.ConfigRecord.to_json` decides
their content. Request bodies are documented here but parsed by the core, which answers
Adobe's validation codes; see :mod:`sluicegate.service.configs`.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sluicegate.rules import (
    MAX_CALLS_COUNT,
    MAX_HTTP_CONNECTIONS,
    MAX_PERIOD_MS,
    MAX_THROUGHPUT,
    MIN_THROUGHPUT,
)
from sluicegate.service.problems import responses
from sluicegate.validation import (
    CONFIG_METHODS,
    ELEMENT_FIELDS,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PATTERN_LENGTH,
)


class ErrorItem(BaseModel):
    errorCode: str = Field(examples=["ERR_ENDPOINTCONFIG_101"])
    error: str


class Scope(BaseModel):
    endpointConfigService: str | None
    endpointConfigUrl: str | None


class WarningItem(BaseModel):
    warningCode: str = Field(examples=["ERR_ENDPOINTCONFIG_106"])
    warning: str
    scope: Scope


class CanDeploy(BaseModel):
    """Adobe's ``canDeploy``: errors block a deploy, warnings do not."""

    validationStatus: Literal["ok", "error"]
    reason: str | None = Field(None, description="Only when there are errors")
    errors: list[ErrorItem]
    warnings: list[WarningItem]


class Element(BaseModel):
    """A config as Adobe shows it: its payload fields plus identity, state and metadata."""

    model_config = ConfigDict(extra="allow")
    uid: str
    id: str = Field(alias="_id", description="Equal to uid")
    orgId: str
    sandboxName: str
    uri: str
    state: Literal["created", "updated", "deployed"]
    hasBeenDeployed: bool
    authoringFormatVersion: str
    metadata: dict[str, str]
    deployedConfig: dict[str, Any] | None = Field(
        None, description="The enforced version; only while deployed"
    )


class CappingElement(Element):
    url: str
    methods: list[str]
    services: dict[str, Any]


class ThrottlingElement(Element):
    name: str | None = None
    description: str | None = None
    urlPattern: str
    methods: list[str]
    maxThroughput: int


E = TypeVar("E", bound=Element)


class Listed(BaseModel, Generic[E]):
    results: list[E]


class Got(BaseModel, Generic[E]):
    result: E


class Created(BaseModel, Generic[E]):
    createdElement: E
    uid: str
    uri: str
    resStatus: Literal["created"]
    canDeploy: CanDeploy


class Updated(BaseModel, Generic[E]):
    updatedElement: E
    uid: str
    uri: str
    resStatus: Literal["updated"]
    canDeploy: CanDeploy


class Deployability(BaseModel):
    canDeploy: CanDeploy


class Empty(BaseModel):
    model_config = ConfigDict(extra="forbid")


_ERRORS = {
    400: "Invalid payload (every validation error in `errors`), header or parameter; "
    "1463: a throttling config outside a production sandbox; 1465: a second throttling "
    "config in the org",
    404: "Unknown sandbox, or no such config in this org and sandbox (code 14467)",
    409: "The config's state forbids it: deleting a deployed config without "
    "forceDelete=true (1451 capping, 1456 throttling)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a configuration route."""
    return responses({status: _ERRORS[status] for status in statuses if status in _ERRORS})


# Request bodies: parsed and validated by the core; described here as exactly as JSON Schema
# allows, so that a body the schema accepts is one the core accepts, and the reverse.

#: An absolute http(s) URL with a host; ``*`` (any run of characters) only after the host.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()+,;=-]+"
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
    r"([/?#].*)?$"
)
_INT_OR_NULL = ["integer", "null"]
_STR_OR_NULL = ["string", "null"]
_URL = {"type": "string", "pattern": URL_PATTERN, "maxLength": MAX_PATTERN_LENGTH}
_METHODS = {"type": "array", "minItems": 1, "items": {"type": "string", "enum": sorted(
    CONFIG_METHODS | {"OPTION"})}}  # fmt: skip
#: Fields of an element a client may send back as it read it: accepted and ignored.
_ECHOED = {name: {"description": "Accepted and ignored"} for name in sorted(ELEMENT_FIELDS)}
_ECHOED["orgId"] = {"description": "Optional and ignored: the org is x-gw-ims-org-id"}
# fmt: off
_SERVICE = {"type": "object", "required": ["rating"], "additionalProperties": False,
    "properties": {
        "maxHttpConnections": {"type": _INT_OR_NULL, "minimum": 1,
                               "maximum": MAX_HTTP_CONNECTIONS,
                               "description": "Absent or null: no limit (warning 106)"},
        "rating": {"type": "object", "required": ["maxCallsCount", "periodInMs"], "properties": {
            "maxCallsCount": {"type": "integer", "minimum": 1, "maximum": MAX_CALLS_COUNT},
            "periodInMs": {"type": "integer", "minimum": 1, "maximum": MAX_PERIOD_MS}}}}}
_CAPPING = {"type": "object", "required": ["url", "methods", "services"],
    "additionalProperties": False, "properties": {**_ECHOED,
        "url": {**_URL, "description": "The endpoint; `*` only in the path"},
        "methods": _METHODS,
        "services": {"type": "object", "minProperties": 1, "additionalProperties": False,
                     "properties": {"action": _SERVICE, "dataSource": _SERVICE}}}}
_CAPPING_EXAMPLE = {"url": "https://api.example.org/data/2.5/weather", "methods": ["GET"],
    "services": {"dataSource": {"maxHttpConnections": 50,
                                "rating": {"maxCallsCount": 500, "periodInMs": 1000}}}}
_THROTTLING = {"type": "object", "required": ["urlPattern", "methods", "maxThroughput"],
    "additionalProperties": False, "properties": {**_ECHOED,
        "name": {"type": _STR_OR_NULL, "maxLength": MAX_NAME_LENGTH},
        "description": {"type": _STR_OR_NULL, "maxLength": MAX_DESCRIPTION_LENGTH},
        "urlPattern": {**_URL, "description": "`*` only in the path"},
        "methods": _METHODS,
        "maxThroughput": {"type": "integer", "minimum": MIN_THROUGHPUT,
                          "maximum": MAX_THROUGHPUT}}}
_THROTTLING_EXAMPLE = {"name": "throttling-config-example", "urlPattern":
    "https://api.example.org/data/2.5/*", "methods": ["POST", "PUT"], "maxThroughput": 4000}
# fmt: on


def _body(schema: dict[str, Any], example: Any, *, required: bool) -> dict[str, Any]:
    content = {"application/json": {"schema": schema, "example": example}}
    return {"requestBody": {"required": required, "content": content}}


#: ``openapi_extra`` documenting each route's request body.
CAPPING_BODY = _body(_CAPPING, _CAPPING_EXAMPLE, required=True)
THROTTLING_BODY = _body(_THROTTLING, _THROTTLING_EXAMPLE, required=True)
IGNORED_BODY = _body({"description": "Any JSON, ignored (Adobe's clients send {})"}, {},
                     required=False)  # fmt: skip
