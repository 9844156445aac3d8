"""One config as :class:`~sluicegate.configs.RuleBook` holds it: a frozen record.

A record is shown in Adobe's element shape (:meth:`ConfigRecord.to_json`) and stored as
a document of its own (:meth:`ConfigRecord.to_doc`), which keeps what the element does
not show: the ``edited`` flag and the exact creation time used to rank rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sluicegate.rules import CappingRule, ThrottlingRule, parse_capping, parse_throttling

Rule = CappingRule | ThrottlingRule


class ConfigKind(StrEnum):
    """Capping (Adobe's ``endpointConfigs``) or throttling (``throttlingConfigs``)."""

    CAPPING = "capping"
    THROTTLING = "throttling"


class ConfigState(StrEnum):
    """Adobe's lifecycle states; only ``deployed_rule`` says what is enforced."""

    CREATED = "created"
    UPDATED = "updated"
    DEPLOYED = "deployed"


#: Where Adobe's API says a config lives (its ``uri``).
URI_PATHS = {
    ConfigKind.CAPPING: "/voyager/apis/endpointConfigs",
    ConfigKind.THROTTLING: "/voyager/apis/throttlingConfigs",
}


def parse(kind: ConfigKind, payload: Any) -> Rule:
    """The rule of a payload of ``kind``; :class:`~sluicegate.errors.InvalidConfig` if invalid."""
    if kind is ConfigKind.CAPPING:
        return parse_capping(payload)
    return parse_throttling(payload)


def iso_time(seconds: float) -> str:
    """``2020-03-09T18:21:52.432Z``: the UTC ISO-8601 form of Adobe's metadata."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRecord:
    """A config and its lifecycle.

    ``rule`` is the current definition; ``deployed_rule`` the snapshot being enforced, or
    ``None`` when the config is not deployed. ``edited`` records an update since creation,
    which decides whether an undeploy returns to ``created`` or ``updated``.
    ``created_at`` (clock seconds) ranks rules of equal specificity: the oldest wins.
    """

    uid: str
    kind: ConfigKind
    org: str
    sandbox: str
    rule: Rule
    state: ConfigState
    edited: bool
    deployed_rule: Rule | None
    metadata: Mapping[str, str]
    created_at: float

    @property
    def payload(self) -> dict[str, Any]:
        """The normalized payload, as stored and shown."""
        return self.rule.to_json()

    @property
    def deployed_payload(self) -> dict[str, Any] | None:
        return None if self.deployed_rule is None else self.deployed_rule.to_json()

    @property
    def has_been_deployed(self) -> bool:
        """Adobe's ``hasBeenDeployed``: true while a deployed version is enforced."""
        return self.deployed_rule is not None

    def to_json(self) -> dict[str, Any]:
        """Adobe's element shape: the payload fields plus identity, state and metadata.

        ``deployedConfig`` is the enforced version; in a capping one, a service without
        ``maxHttpConnections`` reads ``-1`` ("the system default"), as Adobe writes it.
        """
        doc = self.payload
        doc.update(
            uid=self.uid,
            _id=self.uid,
            orgId=self.org,
            sandboxName=self.sandbox,
            authoringFormatVersion="1.0",
            uri=f"{URI_PATHS[self.kind]}/{self.uid}",
            state=str(self.state),
            hasBeenDeployed=self.has_been_deployed,
            metadata=dict(self.metadata),
        )
        deployed = self.deployed_payload
        if deployed is not None:
            if self.kind is ConfigKind.CAPPING:
                for entry in deployed["services"].values():
                    entry.setdefault("maxHttpConnections", -1)
            doc["deployedConfig"] = deployed
        return doc

    def to_doc(self) -> dict[str, Any]:
        """The JSON document a :class:`~sluicegate.storage.ConfigStore` keeps."""
        return {
            "uid": self.uid,
            "kind": str(self.kind),
            "org": self.org,
            "sandbox": self.sandbox,
            "payload": self.payload,
            "state": str(self.state),
            "edited": self.edited,
            "deployedPayload": self.deployed_payload,
            "metadata": dict(self.metadata),
            "createdAt": self.created_at,
        }

    @classmethod
    def from_doc(cls, kind: ConfigKind, doc: Mapping[str, Any]) -> ConfigRecord:
        """The record :meth:`to_doc` wrote; payloads are validated again on the way in."""
        deployed = doc["deployedPayload"]
        return cls(
            uid=doc["uid"],
            kind=kind,
            org=doc["org"],
            sandbox=doc["sandbox"],
            rule=parse(kind, doc["payload"]),
            state=ConfigState(doc["state"]),
            edited=bool(doc["edited"]),
            deployed_rule=None if deployed is None else parse(kind, deployed),
            metadata=dict(doc["metadata"]),
            created_at=float(doc["createdAt"]),
        )
