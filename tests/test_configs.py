"""The config lifecycle: create, deploy, update, undeploy, delete, reload."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.backends.memory import MemoryConfigStore
from sluicegate.call import Call
from sluicegate.configs import ConfigKind, ConfigRecord, RuleBook
from sluicegate.errors import ConfigError, ConfigNotFound, InvalidConfig, StorageError
from sluicegate.matching import ThrottleTarget
from sluicegate.settings import Settings

CAPPING = ConfigKind.CAPPING
THROTTLING = ConfigKind.THROTTLING
ORG = "acme@AdobeOrg"
SANDBOX = "prod"
HERE = {"org": ORG, "sandbox": SANDBOX}
URL = "https://api.example.org/v3/messages/*/send"


class StubClock:
    """The rule book only reads the time."""

    def __init__(self) -> None:
        self.time = 1_600_000_000.0  # 2020-09-13T12:26:40Z

    def now(self) -> float:
        return self.time


def capping(count: int = 500) -> dict[str, Any]:
    rating = {"maxCallsCount": count, "periodInMs": 1000}
    return {"url": URL, "methods": ["POST"], "services": {"action": {"rating": rating}}}


def throttling(rate: int = 300) -> dict[str, Any]:
    return {"name": "t", "urlPattern": URL, "methods": ["POST"], "maxThroughput": rate}


def send(sandbox: str = SANDBOX) -> Call:
    return Call.build(
        org=ORG,
        sandbox=sandbox,
        journey="j",
        service="action",
        method="POST",
        url="https://api.example.org/v3/messages/42/send",
    )


@pytest.fixture
def store() -> MemoryConfigStore:
    return MemoryConfigStore()


@pytest.fixture
def clock() -> StubClock:
    return StubClock()


@pytest.fixture
def book(store: MemoryConfigStore, clock: StubClock) -> RuleBook:
    return RuleBook(store, clock, Settings())  # type: ignore[arg-type]


def enforced_count(book: RuleBook) -> int:
    """The rate the book enforces on the test endpoint (300,000 when no rule applies)."""
    return book.resolve(send()).capping[0].count


async def test_capping_lifecycle(book: RuleBook) -> None:
    """An edit of a deployed capping config waits for the next deploy to be enforced."""
    created = await book.create(CAPPING, payload=capping(500), **HERE)
    uid = created.uid

    assert ("created", False, 300_000) == (
        created.state,
        created.has_been_deployed,
        enforced_count(book),
    )
    assert "deployedConfig" not in created.to_json()

    await book.deploy(CAPPING, uid=uid, **HERE)
    deployed = book.get(CAPPING, uid=uid, **HERE)

    assert ("deployed", True, 500) == (
        deployed.state,
        deployed.has_been_deployed,
        enforced_count(book),
    )

    updated = await book.update(CAPPING, uid=uid, payload=capping(1500), **HERE)
    element = updated.to_json()
    shown = element["services"]["action"]["rating"]["maxCallsCount"]
    snapshot = element["deployedConfig"]["services"]["action"]["rating"]["maxCallsCount"]

    assert ("updated", True, 500) == (
        updated.state,
        updated.has_been_deployed,
        enforced_count(book),
    )
    assert (1500, 500) == (shown, snapshot)

    await book.deploy(CAPPING, uid=uid, **HERE)

    assert ("deployed", 1500) == (book.get(CAPPING, uid=uid, **HERE).state, enforced_count(book))


async def test_undeploy_restores_previous_state(book: RuleBook, clock: StubClock) -> None:
    """Undeploy returns to created or updated, stops enforcement and is idempotent."""
    fresh = await book.create(CAPPING, payload=capping(), **HERE)
    clock.time += 1
    edited = await book.create(CAPPING, payload=capping(), **HERE)
    await book.update(CAPPING, uid=edited.uid, payload=capping(7), **HERE)
    for uid in (fresh.uid, edited.uid):
        await book.deploy(CAPPING, uid=uid, **HERE)
        await book.undeploy(CAPPING, uid=uid, **HERE)
    version = book.version
    await book.undeploy(CAPPING, uid=fresh.uid, **HERE)
    states = [(r.state, r.has_been_deployed) for r in book.list(CAPPING, **HERE)]

    assert [("created", False), ("updated", False)] == states
    assert version == book.version
    assert 300_000 == enforced_count(book)


@pytest.mark.parametrize(
    ("kind", "payload", "code", "message"),
    [
        (CAPPING, capping(), 1451, "Can't delete a deployed endpoint config."),
        (THROTTLING, throttling(), 1456, "Can't delete a deployed throttling config."),
    ],
)
async def test_deployed_config_cannot_be_deleted(
    book: RuleBook, kind: ConfigKind, payload: dict[str, Any], code: int, message: str
) -> None:
    """Deleting a deployed config is refused with Adobe's code unless forced."""
    uid = (await book.create(kind, payload=payload, **HERE)).uid
    await book.deploy(kind, uid=uid, **HERE)
    with pytest.raises(ConfigError) as raised:
        await book.delete(kind, uid=uid, **HERE)

    assert (code, f"{message} Undeploy it before deleting it") == (
        raised.value.code,
        raised.value.message,
    )
    assert uid == book.get(kind, uid=uid, **HERE).uid


async def test_force_delete_undeploys_then_deletes(
    book: RuleBook, store: MemoryConfigStore
) -> None:
    """forceDelete undeploys (announced) and deletes; the config is gone from the store."""
    uid = (await book.create(CAPPING, payload=capping(), **HERE)).uid
    await book.deploy(CAPPING, uid=uid, **HERE)
    seen: list[ConfigRecord | None] = []
    book.on_change(seen.append)
    await book.delete(CAPPING, uid=uid, force=True, **HERE)

    assert [(uid, False), None] == [r and (r.uid, r.has_been_deployed) for r in seen]
    assert [] == await store.load()
    assert 300_000 == enforced_count(book)
    with pytest.raises(ConfigNotFound):
        book.get(CAPPING, uid=uid, **HERE)


async def test_throttling_needs_a_production_sandbox(book: RuleBook) -> None:
    """A throttling config cannot be created in a development sandbox (1463)."""
    with pytest.raises(ConfigError) as raised:
        await book.create(THROTTLING, payload=throttling(), sandbox_type="development", **HERE)

    assert 1463 == raised.value.code
    assert [] == book.list(THROTTLING, **HERE)


async def test_one_throttling_config_per_org(book: RuleBook) -> None:
    """A second throttling config in the org is refused (1465), from any sandbox."""
    await book.create(THROTTLING, payload=throttling(), **HERE)
    with pytest.raises(ConfigError) as raised:
        await book.create(THROTTLING, payload=throttling(), org=ORG, sandbox="prod2")
    await book.create(THROTTLING, payload=throttling(), org="other", sandbox=SANDBOX)

    assert (1465, "only one config allowed per org") == (raised.value.code, raised.value.message)


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        (CAPPING, {"org": "other", "sandbox": SANDBOX}),
        (CAPPING, {"org": ORG, "sandbox": "dev"}),
        (THROTTLING, HERE),
    ],
)
async def test_configs_are_invisible_elsewhere(
    book: RuleBook, kind: ConfigKind, where: dict[str, str]
) -> None:
    """Another org, another sandbox or the other kind sees no such config."""
    uid = (await book.create(CAPPING, payload=capping(), **HERE)).uid
    with pytest.raises(ConfigNotFound):
        book.get(kind, uid=uid, **where)
    with pytest.raises(ConfigNotFound):
        await book.update(kind, uid=uid, payload=capping(), **where)
    with pytest.raises(ConfigNotFound):
        await book.deploy(kind, uid=uid, **where)
    with pytest.raises(ConfigNotFound):
        await book.delete(kind, uid=uid, **where)

    assert [] == book.list(kind, **where)


async def test_throttling_update_applies_at_once(book: RuleBook) -> None:
    """Updating a deployed throttling config changes the enforced rate without a deploy."""
    uid = (await book.create(THROTTLING, payload=throttling(300), **HERE)).uid
    await book.deploy(THROTTLING, uid=uid, **HERE)
    seen: list[ConfigRecord | None] = []
    book.on_change(seen.append)
    record = await book.update(THROTTLING, uid=uid, payload=throttling(600), **HERE)

    assert ("deployed", True) == (record.state, record.has_been_deployed)
    assert [record] == seen
    assert (
        ThrottleTarget(key=f"thr:{ORG}:{uid}", uid=uid, rate=600) == book.resolve(send()).throttle
    )


async def test_throttling_config_applies_to_every_sandbox(book: RuleBook) -> None:
    """The org's throttling config, managed from prod, throttles calls from other sandboxes."""
    uid = (await book.create(THROTTLING, payload=throttling(), **HERE)).uid
    await book.deploy(THROTTLING, uid=uid, **HERE)

    expected = ThrottleTarget(key=f"thr:{ORG}:{uid}", uid=uid, rate=300)

    assert expected == book.resolve(send(sandbox="dev")).throttle


async def test_invalid_payload_stores_nothing(book: RuleBook, store: MemoryConfigStore) -> None:
    """An invalid payload is refused with its codes and nothing is stored."""
    with pytest.raises(InvalidConfig) as raised:
        await book.create(CAPPING, payload={"url": "https://*.org/x"}, **HERE)

    assert ["ERR_ENDPOINTCONFIG_102", "ERR_ENDPOINTCONFIG_103", "ERR_ENDPOINTCONFIG_111"] == [
        detail["errorCode"] for detail in raised.value.details
    ]
    assert ([], [], 0) == (await store.load(), book.list(CAPPING, **HERE), book.version)


async def test_reload_gives_the_same_records(
    book: RuleBook, store: MemoryConfigStore, clock: StubClock
) -> None:
    """A new rule book loading the same store holds equal records and enforces the same."""
    deployed = await book.create(CAPPING, payload=capping(40), **HERE)
    await book.deploy(CAPPING, uid=deployed.uid, **HERE)
    await book.update(CAPPING, uid=deployed.uid, payload=capping(80), **HERE)
    await book.create(CAPPING, payload=capping(), org=ORG, sandbox="dev")
    throttle = await book.create(THROTTLING, payload=throttling(), **HERE)
    await book.deploy(THROTTLING, uid=throttle.uid, **HERE)
    reloaded = RuleBook(store, clock, Settings())  # type: ignore[arg-type]
    await reloaded.load()

    for kind in (CAPPING, THROTTLING):
        for sandbox in (SANDBOX, "dev"):
            expected = book.list(kind, org=ORG, sandbox=sandbox)

            assert expected == reloaded.list(kind, org=ORG, sandbox=sandbox)
    assert book.resolve(send()) == reloaded.resolve(send())


async def test_unreadable_stored_config_fails_the_load(
    store: MemoryConfigStore, clock: StubClock
) -> None:
    """A stored document that no longer parses stops the load with a StorageError."""
    await store.save("capping", "u1", {"uid": "u1", "payload": {"url": "nope"}})
    book = RuleBook(store, clock, Settings())  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        await book.load()


async def test_metadata_records_who_and_when(book: RuleBook, clock: StubClock) -> None:
    """Metadata tells who created, last modified and last deployed, in ISO-8601 UTC."""
    uid = (await book.create(CAPPING, payload=capping(), by="alice", **HERE)).uid
    clock.time += 60.5
    await book.update(CAPPING, uid=uid, payload=capping(), by="bob", **HERE)
    clock.time += 60
    await book.deploy(CAPPING, uid=uid, by="carol", **HERE)
    expected = {
        "createdBy": "alice",
        "createdAt": "2020-09-13T12:26:40.000Z",
        "lastModifiedBy": "bob",
        "lastModifiedAt": "2020-09-13T12:27:40.500Z",
        "lastDeployedBy": "carol",
        "lastDeployedAt": "2020-09-13T12:28:40.500Z",
    }

    assert expected == book.get(CAPPING, uid=uid, **HERE).metadata


async def test_element_json_is_adobe_shaped(book: RuleBook) -> None:
    """A deployed capping config reads as Adobe's element, with -1 for unset connections."""
    uid = (await book.create(CAPPING, payload=capping(), by="alice", **HERE)).uid
    await book.deploy(CAPPING, uid=uid, by="alice", **HERE)
    element = book.get(CAPPING, uid=uid, **HERE).to_json()
    deployed_service = {
        "maxHttpConnections": -1,
        "rating": capping()["services"]["action"]["rating"],
    }
    stamp = "2020-09-13T12:26:40.000Z"
    expected = {
        **capping(),
        "uid": uid,
        "_id": uid,
        "orgId": ORG,
        "sandboxName": SANDBOX,
        "authoringFormatVersion": "1.0",
        "uri": f"/voyager/apis/endpointConfigs/{uid}",
        "state": "deployed",
        "hasBeenDeployed": True,
        "metadata": {
            "createdBy": "alice",
            "createdAt": stamp,
            "lastModifiedBy": "alice",
            "lastModifiedAt": stamp,
            "lastDeployedBy": "alice",
            "lastDeployedAt": stamp,
        },
        "deployedConfig": {**capping(), "services": {"action": deployed_service}},
    }

    assert expected == element


async def test_can_deploy_reports_warnings(book: RuleBook) -> None:
    """canDeploy of a stored config is ok, with warning 106 for the unset connection limit."""
    uid = (await book.create(CAPPING, payload=capping(), **HERE)).uid
    validation = book.can_deploy(CAPPING, uid=uid, **HERE)

    assert (True, ["ERR_ENDPOINTCONFIG_106"]) == (
        validation.ok,
        [w.code for w in validation.warnings],
    )


async def test_every_change_bumps_the_version(book: RuleBook) -> None:
    """create, update, deploy, undeploy and delete each bump the version once."""
    uid = (await book.create(CAPPING, payload=capping(), **HERE)).uid
    await book.update(CAPPING, uid=uid, payload=capping(), **HERE)
    await book.deploy(CAPPING, uid=uid, **HERE)
    await book.undeploy(CAPPING, uid=uid, **HERE)
    await book.delete(CAPPING, uid=uid, **HERE)

    assert 5 == book.version
