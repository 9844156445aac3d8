"""Queued calls sealed at rest: what a copy of the data dir or of Redis gives, and keys.

The secrets of a call are put in the three places a partner's would be (an
``Authorization`` header, a key in the URL, a customer's address in the body); the raw
bytes of the store are then searched for them. The same search on a store without a key
finds them, so the search itself is shown to work.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis import asyncio as aioredis
from tests.backends.conftest import DATA_KEY, make_queued
from tests.services import shared

from sluicegate.errors import InvalidInput, StorageError
from sluicegate.sealing import Sealer, new_key, parse_keys
from sluicegate.storage import Backend, QueuedCall
from sluicegate.wiring import Shared, open_backend

BODY = b'{"email": "jane.doe@example.com"}'
#: Each secret, and the forms in which a store may write it (Redis writes bodies in base64).
SECRETS = {
    b"Bearer partner-secret-7f3a": (b"Bearer partner-secret-7f3a",),
    b"api_key=url-secret-91c2": (b"api_key=url-secret-91c2",),
    b"jane.doe@example.com": (b"jane.doe@example.com", base64.b64encode(BODY)),
}
OTHER_KEY = bytes(range(1, 33))


def secret_call(n: int = 1) -> QueuedCall:
    item = make_queued(n, body=BODY)
    call = replace(item.call, url=f"{item.call.url}?api_key=url-secret-91c2",
                   headers={"Authorization": "Bearer partner-secret-7f3a"})  # fmt: skip
    return replace(item, call=call)


def found_in(blobs: list[bytes]) -> set[bytes]:
    return {secret for secret, forms in SECRETS.items()
            if any(form in blob for form in forms for blob in blobs)}  # fmt: skip


def files_of(data_dir: Path) -> list[bytes]:
    return [path.read_bytes() for path in data_dir.iterdir() if path.is_file()]


async def pushed(where: Path | Shared, keys: tuple[bytes, ...]) -> Backend:
    backend = await open_backend(where, keys)
    await backend.recover(0)
    await backend.queue.push(secret_call())
    return backend


@pytest.mark.parametrize(("keys", "visible"), [((), set(SECRETS)), ((DATA_KEY,), set())])
async def test_a_copy_of_the_data_dir_holds_no_secret_of_a_queued_call(
    tmp_path: Path, keys: tuple[bytes, ...], visible: set[bytes]
) -> None:
    """With a data key, the files of the data dir (database and WAL) hold none of a
    queued call's secrets; without one, all three are there to read."""
    backend = await pushed(tmp_path, keys)
    try:
        assert visible == found_in(files_of(tmp_path))
    finally:
        await backend.aclose()
    assert visible == found_in(files_of(tmp_path))


@pytest.fixture
async def where() -> AsyncIterator[Shared]:
    async with shared() as found:
        yield replace(found, server_time=False)


async def _redis_values(where: Shared) -> list[bytes]:
    client = aioredis.Redis.from_url(where.redis_url)
    values: list[bytes] = []
    try:
        async for key in client.scan_iter(f"{where.prefix}*"):
            kind = (await client.type(key)).decode()
            if kind == "string":
                values.append(await client.get(key))
            elif kind == "hash":
                values.extend((await client.hgetall(key)).values())
            elif kind == "zset":
                values.extend(await client.zrange(key, 0, -1))
            elif kind == "list":
                values.extend(await client.lrange(key, 0, -1))
    finally:
        await client.aclose()
    return values


@pytest.mark.parametrize(("keys", "visible"), [((), set(SECRETS)), ((DATA_KEY,), set())])
async def test_redis_holds_no_secret_of_a_queued_call(
    where: Shared, keys: tuple[bytes, ...], visible: set[bytes]
) -> None:
    """The same in Redis: every value under the deployment's prefix is searched."""
    backend = await pushed(where, keys)
    try:
        assert visible == found_in(await _redis_values(where))
    finally:
        await backend.aclose()


async def test_a_sealed_call_reads_back_whole_with_its_key_and_after_a_rotation(
    tmp_path: Path,
) -> None:
    """Sealed with one key, a call reads back unchanged with it, and with a new key in
    front of it (a rotation): new calls are sealed with the new key."""
    await (await pushed(tmp_path, (DATA_KEY,))).aclose()
    backend = await open_backend(tmp_path, (OTHER_KEY, DATA_KEY))
    try:
        await backend.recover(0)
        await backend.queue.push(secret_call(2))
        assert [secret_call(1), secret_call(2)] == await backend.queue.claim("q", 10)
    finally:
        await backend.aclose()
    with pytest.raises(StorageError):  # call 2 is sealed with the new key only
        await open_backend(tmp_path, (DATA_KEY,))


@pytest.mark.parametrize("keys", [(), (OTHER_KEY,)])
async def test_sealed_calls_without_their_key_refuse_the_start(
    tmp_path: Path, keys: tuple[bytes, ...]
) -> None:
    """A data dir with sealed calls does not open without their key, or with another
    one: the calls would otherwise be stuck or dropped."""
    await (await pushed(tmp_path, (DATA_KEY,))).aclose()
    with pytest.raises(StorageError, match="data key"):
        await open_backend(tmp_path, keys)


async def test_calls_queued_before_a_key_was_set_still_read(tmp_path: Path) -> None:
    """Setting a key later: the plain calls already queued are read as they are."""
    await (await pushed(tmp_path, ())).aclose()
    backend = await open_backend(tmp_path, (DATA_KEY,))
    try:
        await backend.recover(0)
        assert [secret_call()] == await backend.queue.claim("q", 10)
    finally:
        await backend.aclose()


def test_a_sealed_blob_opens_only_for_its_call_and_unaltered() -> None:
    """The call id is bound to the blob: moved to another call, or altered, it does not
    open."""
    sealer = Sealer((DATA_KEY,))
    blob = sealer.seal(b"secret", "call-1")
    assert b"secret" == sealer.open(blob, "call-1")
    with pytest.raises(StorageError):
        sealer.open(blob, "call-2")
    with pytest.raises(StorageError):
        sealer.open(blob[:-1] + bytes([blob[-1] ^ 1]), "call-1")


@pytest.mark.parametrize("text", ["", "not base64!", "c2hvcnQ=", f"{new_key()},abc"])
def test_a_bad_key_is_refused_with_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_keys(text)


def test_new_keys_parse_and_differ() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert 2 == len(parse_keys(f"{first},{second}"))
