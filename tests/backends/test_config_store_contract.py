"""The ConfigStore contract: JSON documents by kind and uid, oldest first."""

from __future__ import annotations

from typing import Any

from sluicegate.storage import Backend


def doc(uid: str, **extra: Any) -> dict[str, Any]:
    return {"uid": uid, "url": "https://api.example.com/*", "methods": ["GET"], **extra}


async def test_empty_store_loads_nothing(backend: Backend) -> None:
    """A fresh store holds no config."""
    expected: list[tuple[str, dict[str, Any]]] = []
    assert expected == await backend.configs.load()


async def test_load_returns_saved_docs_oldest_first(backend: Backend) -> None:
    """Documents of both kinds come back as saved, in save order."""
    await backend.configs.save("capping", "c1", doc("c1"))
    await backend.configs.save("throttling", "t1", doc("t1", maxThroughput=300))
    await backend.configs.save("capping", "c2", doc("c2"))
    expected = [
        ("capping", doc("c1")),
        ("throttling", doc("t1", maxThroughput=300)),
        ("capping", doc("c2")),
    ]
    assert expected == await backend.configs.load()


async def test_save_again_replaces_and_keeps_order(backend: Backend) -> None:
    """Saving an existing (kind, uid) replaces its document in place."""
    await backend.configs.save("capping", "c1", doc("c1"))
    await backend.configs.save("capping", "c2", doc("c2"))
    await backend.configs.save("capping", "c1", doc("c1", status="deployed"))
    expected = [("capping", doc("c1", status="deployed")), ("capping", doc("c2"))]
    assert expected == await backend.configs.load()


async def test_same_uid_in_two_kinds_is_two_docs(backend: Backend) -> None:
    """The key is (kind, uid): one uid may exist as capping and as throttling."""
    await backend.configs.save("capping", "x", doc("x", kind="c"))
    await backend.configs.save("throttling", "x", doc("x", kind="t"))
    await backend.configs.delete("capping", "x")
    assert [("throttling", doc("x", kind="t"))] == await backend.configs.load()


async def test_delete_forgets_one_doc(backend: Backend) -> None:
    """A deleted document is gone; deleting it again or an unknown uid is a no-op."""
    await backend.configs.save("capping", "c1", doc("c1"))
    await backend.configs.save("capping", "c2", doc("c2"))
    await backend.configs.delete("capping", "c1")
    await backend.configs.delete("capping", "c1")
    await backend.configs.delete("capping", "unknown")
    assert [("capping", doc("c2"))] == await backend.configs.load()


async def test_saved_after_delete_goes_last(backend: Backend) -> None:
    """A document saved again after its deletion is the newest."""
    await backend.configs.save("capping", "c1", doc("c1"))
    await backend.configs.save("capping", "c2", doc("c2"))
    await backend.configs.delete("capping", "c1")
    await backend.configs.save("capping", "c1", doc("c1"))
    expected = [("capping", doc("c2")), ("capping", doc("c1"))]
    assert expected == await backend.configs.load()


async def test_docs_are_not_aliased(backend: Backend) -> None:
    """Changing a saved or loaded document afterwards does not change what is stored."""
    original = doc("c1", nested={"rating": {"maxCallsCount": 10}}, unicode="ümlaut ✓")
    await backend.configs.save("capping", "c1", original)
    original["nested"]["rating"]["maxCallsCount"] = 99
    [(_, loaded)] = await backend.configs.load()
    loaded["methods"].append("POST")
    expected = doc("c1", nested={"rating": {"maxCallsCount": 10}}, unicode="ümlaut ✓")
    assert [("capping", expected)] == await backend.configs.load()
