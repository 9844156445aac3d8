"""The lifecycle of capping and throttling configs, for every org, written through a store.

A config is ``created``, then ``deployed``; an edit makes it ``updated``. Only deployed
rules are enforced, and what is enforced is the snapshot taken at deploy time
(``deployed_rule``), so a capping edit waits for the next deploy. A throttling edit of a
deployed config applies at once, as Adobe documents. Capping configs belong to an org
and sandbox. The one throttling config of an org is managed from the sandbox it was
created in and enforced for calls from every sandbox of the org.

Every change is saved to the :class:`~sluicegate.storage.ConfigStore` before it is
visible, bumps :attr:`RuleBook.version` and is announced to the ``on_change`` callbacks.
A uid of another org or sandbox is reported as not found: nothing crosses orgs.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.errors import AdobeCode, ConfigError, ConfigNotFound, InvalidConfig, StorageError
from sluicegate.matching import DeployedRule, Resolution, Resolver
from sluicegate.records import ConfigKind, ConfigRecord, ConfigState, Rule, iso_time, parse
from sluicegate.rules import validate_capping, validate_throttling
from sluicegate.settings import Settings
from sluicegate.storage import ConfigStore
from sluicegate.validation import Validation

__all__ = ["PRODUCTION", "ConfigKind", "ConfigRecord", "ConfigState", "RuleBook"]

PRODUCTION = "production"


class RuleBook:
    """Every config of every org: the lifecycle API and the source of enforced rules."""

    def __init__(self, store: ConfigStore, clock: Clock, settings: Settings) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._records: dict[str, ConfigRecord] = {}
        self._callbacks: list[Callable[[ConfigRecord | None], None]] = []
        self._resolver: Resolver | None = None
        self._version = 0
        # Checks such as "one throttling config per org" span an await on the store.
        self._lock = asyncio.Lock()

    @property
    def version(self) -> int:
        """Bumped on every change; a cache of anything derived from the rules keys on it."""
        return self._version

    def on_change(self, callback: Callable[[ConfigRecord | None], None]) -> None:
        """Call ``callback(record)`` after every change (``None`` after a delete).
        Callbacks run inline and must not raise."""
        self._callbacks.append(callback)

    async def load(self) -> None:
        """Replace what is held by what the store holds (at startup)."""
        records = await self._read()
        async with self._lock:
            self._records = records
            self._version += 1
            self._resolver = None

    async def reload(self) -> None:
        """Take in what another process changed in a shared store: every config found
        changed, added or gone is announced as a change made here would be."""
        async with self._lock:
            records = await self._read()
            changed = [
                record for uid, record in records.items() if self._records.get(uid) != record
            ]
            gone = self._records.keys() - records.keys()
            self._records = records
        for record in changed:
            self._changed(record)
        if gone:
            self._changed(None)

    async def _read(self) -> dict[str, ConfigRecord]:
        records: dict[str, ConfigRecord] = {}
        for kind, doc in await self._store.load():
            try:
                record = ConfigRecord.from_doc(ConfigKind(kind), doc)
            except (ValueError, KeyError, TypeError, InvalidConfig) as exc:
                raise StorageError(f"unreadable stored {kind} config: {exc}") from exc
            records[record.uid] = record
        return records

    async def create(
        self,
        kind: ConfigKind,
        *,
        org: str,
        sandbox: str,
        payload: Any,
        by: str = "",
        sandbox_type: str = PRODUCTION,
    ) -> ConfigRecord:
        """Store a new config in state ``created``; :class:`InvalidConfig` if invalid."""
        if kind is ConfigKind.THROTTLING and sandbox_type != PRODUCTION:
            message = "throttling configs can only be created in a production sandbox"
            raise ConfigError(AdobeCode.NON_PROD_SANDBOX, message)
        rule = parse(kind, payload)
        async with self._lock:
            if kind is ConfigKind.THROTTLING and any(
                record.kind is kind and record.org == org for record in self._records.values()
            ):
                raise ConfigError(AdobeCode.CREATE_LIMIT, "only one config allowed per org")
            now = self._clock.now()
            stamp = iso_time(now)
            record = ConfigRecord(
                uid=str(uuid.uuid4()),
                kind=kind,
                org=org,
                sandbox=sandbox,
                rule=rule,
                state=ConfigState.CREATED,
                edited=False,
                deployed_rule=None,
                metadata={
                    "createdBy": by,
                    "createdAt": stamp,
                    "lastModifiedBy": by,
                    "lastModifiedAt": stamp,
                },
                created_at=now,
            )
            await self._commit(record)
        return record

    async def update(
        self, kind: ConfigKind, *, org: str, sandbox: str, uid: str, payload: Any, by: str = ""
    ) -> ConfigRecord:
        """Overwrite a config's payload. A deployed capping config keeps enforcing its
        deployed version until the next deploy; a deployed throttling config switches now."""
        async with self._lock:
            record = self.get(kind, org=org, sandbox=sandbox, uid=uid)
            rule = parse(kind, payload)
            stamp = iso_time(self._clock.now())
            metadata = {**record.metadata, "lastModifiedBy": by, "lastModifiedAt": stamp}
            updated = replace(record, rule=rule, edited=True, metadata=metadata)
            if kind is ConfigKind.THROTTLING and record.has_been_deployed:
                updated = replace(updated, deployed_rule=rule)
            else:
                updated = replace(updated, state=ConfigState.UPDATED)
            await self._commit(updated)
        return updated

    def get(self, kind: ConfigKind, *, org: str, sandbox: str, uid: str) -> ConfigRecord:
        """The config ``uid`` as seen from ``org`` and ``sandbox``; else :class:`ConfigNotFound`."""
        record = self._records.get(uid)
        if record is None or (record.kind, record.org, record.sandbox) != (kind, org, sandbox):
            raise ConfigNotFound(kind, uid)
        return record

    def list(self, kind: ConfigKind, *, org: str, sandbox: str) -> builtins.list[ConfigRecord]:
        """The configs of ``kind`` managed from ``org`` and ``sandbox``, oldest first."""
        found = [
            record
            for record in self._records.values()
            if (record.kind, record.org, record.sandbox) == (kind, org, sandbox)
        ]
        return sorted(found, key=lambda record: (record.created_at, record.uid))

    def enforced(self, uid: str) -> Rule | None:
        """The deployed rule of the config ``uid``, whatever its org; ``None`` if none."""
        record = self._records.get(uid)
        return None if record is None else record.deployed_rule

    def can_deploy(self, kind: ConfigKind, *, org: str, sandbox: str, uid: str) -> Validation:
        """The errors and warnings of the config's current payload (Adobe's canDeploy)."""
        payload = self.get(kind, org=org, sandbox=sandbox, uid=uid).payload
        if kind is ConfigKind.CAPPING:
            return validate_capping(payload)
        return validate_throttling(payload)

    async def deploy(
        self, kind: ConfigKind, *, org: str, sandbox: str, uid: str, by: str = ""
    ) -> None:
        """Enforce the current payload from now on (validated again: a config that no
        longer validates raises :class:`InvalidConfig`). Deploying again re-snapshots."""
        async with self._lock:
            record = self.get(kind, org=org, sandbox=sandbox, uid=uid)
            rule = parse(kind, record.payload)
            stamp = iso_time(self._clock.now())
            metadata = {**record.metadata, "lastDeployedBy": by, "lastDeployedAt": stamp}
            await self._commit(
                replace(record, state=ConfigState.DEPLOYED, deployed_rule=rule, metadata=metadata)
            )

    async def undeploy(self, kind: ConfigKind, *, org: str, sandbox: str, uid: str) -> None:
        """Stop enforcing; the state returns to what it was before the deploy. Idempotent."""
        async with self._lock:
            record = self.get(kind, org=org, sandbox=sandbox, uid=uid)
            if record.has_been_deployed:
                await self._commit(self._undeployed(record))

    async def delete(
        self, kind: ConfigKind, *, org: str, sandbox: str, uid: str, force: bool = False
    ) -> None:
        """Forget a config. A deployed one is refused (:class:`AdobeCode`
        ``DELETE_DEPLOYED_*``) unless ``force``, which undeploys it first."""
        async with self._lock:
            record = self.get(kind, org=org, sandbox=sandbox, uid=uid)
            if record.has_been_deployed:
                if not force:
                    code = (
                        AdobeCode.DELETE_DEPLOYED_CAPPING
                        if kind is ConfigKind.CAPPING
                        else AdobeCode.DELETE_DEPLOYED_THROTTLING
                    )
                    name = "endpoint" if kind is ConfigKind.CAPPING else "throttling"
                    message = (
                        f"Can't delete a deployed {name} config. Undeploy it before deleting it"
                    )
                    raise ConfigError(code, message)
                await self._commit(self._undeployed(record))
            await self._store.delete(kind, uid)
            del self._records[uid]
            self._changed(None)

    def resolve(self, call: Call) -> Resolution:
        """What the deployed rules say about ``call`` (see :mod:`sluicegate.matching`)."""
        if self._resolver is None:
            self._resolver = Resolver(
                self._settings,
                (
                    DeployedRule(
                        uid=record.uid,
                        org=record.org,
                        sandbox=record.sandbox,
                        created_at=record.created_at,
                        rule=record.deployed_rule,
                    )
                    for record in self._records.values()
                    if record.deployed_rule is not None
                ),
            )
        return self._resolver.resolve(call)

    @staticmethod
    def _undeployed(record: ConfigRecord) -> ConfigRecord:
        state = ConfigState.UPDATED if record.edited else ConfigState.CREATED
        return replace(record, state=state, deployed_rule=None)

    async def _commit(self, record: ConfigRecord) -> None:
        """Save first, so what is visible is always what a restart would load."""
        await self._store.save(record.kind, record.uid, record.to_doc())
        self._records[record.uid] = record
        self._changed(record)

    def _changed(self, record: ConfigRecord | None) -> None:
        self._version += 1
        self._resolver = None
        for callback in self._callbacks:
            callback(record)
