"""Throttling queues in Redis, one FIFO per queue for every instance: the queue store of
:mod:`sluicegate.backends.redis` (see its docstring for the choices)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import defaultdict

from redis import asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from sluicegate.backends.redis_keys import Keys, ask
from sluicegate.call import Call, Service
from sluicegate.errors import StorageError
from sluicegate.sealing import Sealer
from sluicegate.storage import QueuedCall, QueueDepth, Stored

#: How long a claimed call stays with its instance without a renewal.
CLAIM_LEASE_MS = 10_000
log = logging.getLogger(__name__)


#: Starts a call's document that is sealed (:mod:`sluicegate.sealing`), base64 after it.
_SEALED = "~"


def _encode(item: QueuedCall, sealer: Sealer | None) -> str:
    """The document of ``item``: JSON, or with a sealer the JSON sealed, in base64."""
    call = item.call
    text = json.dumps({
        "org": call.org, "sandbox": call.sandbox, "journey": call.journey,
        "service": str(call.service), "method": call.method, "url": call.url,
        "headers": dict(call.headers), "timeout": call.timeout_seconds,
        "body": base64.b64encode(call.body).decode(),
    }, separators=(",", ":"))  # fmt: skip
    if sealer is None:
        return text
    return _SEALED + base64.b64encode(sealer.seal(text.encode(), item.call_id)).decode()


def _decode(
    sealer: Sealer | None, queue: str, call_id: str, text: str | None, meta: str | None
) -> QueuedCall:
    try:
        if text is None or not meta:
            raise ValueError("its data is missing")
        _, enqueued_at, rate = meta.split(" ")
        if text.startswith(_SEALED):
            if sealer is None:
                raise StorageError(f"queued call {call_id!r} is sealed and no data key is given")
            text = sealer.open(base64.b64decode(text[1:]), call_id).decode()
        doc = json.loads(text)
        call = Call(
            org=doc["org"], sandbox=doc["sandbox"], journey=doc["journey"],
            service=Service(doc["service"]), method=doc["method"], url=doc["url"],
            headers=doc["headers"], body=base64.b64decode(doc["body"]),
            timeout_seconds=doc["timeout"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"queued call {call_id!r} cannot be read back: {exc}") from exc
    return QueuedCall(call_id=call_id, queue=queue, call=call, enqueued_at=float(enqueued_at),
                      rate=int(rate))  # fmt: skip


class RedisQueueStore:
    """One FIFO per queue in Redis for every instance (see the module doc). ``depth`` is
    the last depth this instance saw; the dispatchers of every instance look for work in
    :meth:`queues` regularly, so calls pushed elsewhere are never stranded."""

    shared = True

    def __init__(
        self,
        client: aioredis.Redis,
        scripts: dict[str, AsyncScript],
        keys: Keys,
        sealer: Sealer | None = None,
    ) -> None:
        self._client = client
        self._sealer = sealer
        self._scripts = scripts
        self._keys = keys
        self._depth: dict[str, int] = {}
        self._paused: set[str] = set()  # as last seen
        self._mine: dict[str, str] = {}  # call id -> queue, of the calls claimed here
        self._renewer: asyncio.Task[None] | None = None
        self._pushes: list[tuple[QueuedCall, asyncio.Future[None]]] = []
        self._pusher: asyncio.Task[None] | None = None
        self._pushing: dict[str, asyncio.Future[None]] = {}  # by call id, until written
        self._closed = asyncio.Event()

    async def push(self, item: QueuedCall) -> None:
        """Pushes made while others are being written go together in one pipeline, in
        the order they were made."""
        queue = item.queue
        self._depth[queue] = self._depth.get(queue, 0) + 1  # counted from the call on
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pushes.append((item, done))
        self._pushing[item.call_id] = done
        done.add_done_callback(lambda _: self._pushing.pop(item.call_id, None))
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_loop(), name="redis pushes")
        try:
            await asyncio.shield(done)
        except StorageError:
            self._depth[queue] -= 1
            raise

    async def _push_loop(self) -> None:
        while self._pushes:
            batch, self._pushes = self._pushes, []
            pipe: Pipeline = self._client.pipeline(transaction=False)
            for item, _ in batch:
                seq, waiting, _, data, meta = self._keys.queue(item.queue)
                pipe.hset(self._keys.index, item.call_id, item.queue)
                pipe.sadd(self._keys.queues, item.queue)
                await self._scripts["push"](
                    keys=[seq, waiting, data, meta],
                    args=[
                        item.call_id,
                        _encode(item, self._sealer),
                        repr(item.enqueued_at),
                        item.rate,
                    ],
                    client=pipe,
                )
            try:
                answers = await ask("queueing calls", pipe.execute())
            except StorageError as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for (item, done), depth in zip(batch, answers[2::3], strict=True):
                self._depth[item.queue] = int(depth)
                done.set_result(None)

    async def claim(self, queue: str, count: int) -> list[QueuedCall]:
        _, waiting, claimed, data, meta = self._keys.queue(queue)
        request = self._scripts["claim"](
            keys=[waiting, claimed, data, meta, self._keys.paused(queue)],
            args=[count, CLAIM_LEASE_MS], client=self._client,
        )  # fmt: skip
        found = await ask("claiming calls", request)
        self._depth[queue] = int(found[0])
        self._saw(queue, paused=bool(found[1]))
        items = [_decode(self._sealer, queue, *found[i : i + 3]) for i in range(2, len(found), 3)]
        for item in items:
            self._mine[item.call_id] = queue
        if items and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew(), name="redis claim leases")
        return items

    async def purge(self, queue: str, count: int) -> list[QueuedCall]:
        """One script takes the calls out (so no other instance claims them); a call that
        then cannot be read back (sealed with a key this instance lacks) is logged and left
        out of the answer: it is purged all the same."""
        _, waiting, claimed, data, meta = self._keys.queue(queue)
        request = self._scripts["purge"](keys=[waiting, claimed, data, meta], args=[count],
                                         client=self._client)  # fmt: skip
        found = await ask("purging calls", request)
        self._depth[queue] = int(found[0])
        purged = [found[i] for i in range(1, len(found), 3)]
        if purged:
            await ask("purging calls", self._client.hdel(self._keys.index, *purged))
        items = []
        for i in range(1, len(found), 3):
            try:
                items.append(_decode(self._sealer, queue, *found[i : i + 3]))
            except StorageError as exc:
                log.error("purged call %s not reported: %s", found[i], exc)
        return items

    async def pause(self, queue: str) -> None:
        pipe: Pipeline = self._client.pipeline(transaction=False)
        pipe.sadd(self._keys.queues, queue)  # listed by queues() while paused, even empty
        pipe.set(self._keys.paused(queue), "1")
        await ask("pausing a queue", pipe.execute())
        self._saw(queue, paused=True)

    async def resume(self, queue: str) -> None:
        await ask("resuming a queue", self._client.delete(self._keys.paused(queue)))
        self._saw(queue, paused=False)

    def paused(self, queue: str) -> bool:
        return queue in self._paused

    def _saw(self, queue: str, *, paused: bool) -> None:
        if paused:
            self._paused.add(queue)
        else:
            self._paused.discard(queue)

    async def expire(self, queue: str, cutoff: float) -> tuple[list[QueuedCall], float | None]:
        _, waiting, _, data, meta = self._keys.queue(queue)
        request = self._scripts["expire"](
            keys=[waiting, data, meta], args=[repr(cutoff)], client=self._client
        )
        found = await ask("expiring calls", request)
        self._depth[queue] = int(found[0])
        expired = [found[i] for i in range(2, len(found), 3)]
        if expired:
            await ask("expiring calls", self._client.hdel(self._keys.index, *expired))
        items = [_decode(self._sealer, queue, *found[i : i + 3]) for i in range(2, len(found), 3)]
        return items, float(found[1]) if found[1] else None

    async def remove(self, call_id: str) -> None:
        if (pushing := self._pushing.get(call_id)) is not None:  # its push goes first
            await asyncio.gather(pushing, return_exceptions=True)
        queue = self._mine.pop(call_id, None) or await self._where(call_id)
        if queue is None:
            return
        _, waiting, claimed, data, meta = self._keys.queue(queue)
        request = self._scripts["remove"](
            keys=[waiting, claimed, data, meta], args=[call_id], client=self._client
        )
        self._depth[queue] = int(await ask("removing a call", request))
        await ask("removing a call", self._client.hdel(self._keys.index, call_id))

    async def unclaim(self, call_id: str) -> None:
        queue = self._mine.pop(call_id, None)
        if queue is not None:
            _, waiting, claimed, _, meta = self._keys.queue(queue)
            request = self._scripts["reclaim"](
                keys=[waiting, claimed, meta], args=[call_id], client=self._client
            )
            self._depth[queue] = int(await ask("putting a call back", request))

    async def reclaim(self) -> None:
        """Put back the calls claimed here, and every call whose lease ended (its
        instance died)."""
        mine: dict[str, list[str]] = defaultdict(list)
        for call_id, queue in self._mine.items():
            mine[queue].append(call_id)
        self._mine.clear()
        for queue in await self._names():
            _, waiting, claimed, _, meta = self._keys.queue(queue)
            request = self._scripts["reclaim"](
                keys=[waiting, claimed, meta], args=mine.get(queue, []), client=self._client
            )
            self._depth[queue] = int(await ask("reclaiming calls", request))

    def depth(self, queue: str) -> int:
        return self._depth.get(queue, 0)

    async def queues(self) -> list[QueueDepth]:
        names = await self._names()
        pipe: Pipeline = self._client.pipeline(transaction=False)
        for queue in names:
            _, waiting, _, _, meta = self._keys.queue(queue)
            await self._scripts["head"](keys=[waiting, meta, self._keys.paused(queue)],
                                        client=pipe)  # fmt: skip
        found = []
        for queue, (depth, head, paused) in zip(
            names, await ask("reading queues", pipe.execute()), strict=True
        ):
            self._depth[queue] = int(depth)
            self._saw(queue, paused=bool(paused))
            if depth and head:
                _, oldest, rate = head.split(" ")
                found.append(QueueDepth(queue=queue, depth=int(depth), oldest=float(oldest),
                                        rate=int(rate), paused=bool(paused)))  # fmt: skip
            elif paused:
                found.append(QueueDepth(queue=queue, depth=0, oldest=None, rate=0, paused=True))
        return found

    async def find(self, call_id: str) -> Stored | None:
        queue = await self._where(call_id)
        if queue is None:
            return None
        _, waiting, claimed, _, _ = self._keys.queue(queue)
        pipe: Pipeline = self._client.pipeline(transaction=False)
        pipe.zscore(waiting, call_id)
        pipe.zscore(claimed, call_id)
        is_waiting, is_claimed = await ask("finding a call", pipe.execute())
        if is_waiting is not None:
            return "queued"
        return "claimed" if is_claimed is not None else None

    async def _where(self, call_id: str) -> str | None:
        """The queue of a stored call, from the index."""
        found = await ask("finding a call", self._client.hget(self._keys.index, call_id))
        return None if found is None else str(found)

    async def _names(self) -> list[str]:
        """Every queue that ever held a call."""
        found = await ask("listing queues", self._client.smembers(self._keys.queues))
        return sorted(str(name) for name in found)

    async def _renew(self) -> None:
        """Keep the leases of the calls this instance runs, while it runs them."""
        while self._mine:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), CLAIM_LEASE_MS / 3000)
                return
            mine: dict[str, list[str]] = defaultdict(list)
            for call_id, queue in list(self._mine.items()):
                mine[queue].append(call_id)
            try:
                for queue, ids in mine.items():
                    claimed = self._keys.queue(queue)[2]
                    await self._scripts["renew"](
                        keys=[claimed], args=[CLAIM_LEASE_MS, *ids], client=self._client
                    )
            except (RedisError, OSError) as exc:
                log.warning("claim leases not renewed: %s", exc)

    async def aclose(self) -> None:
        if self._pusher is not None:
            await asyncio.gather(self._pusher, return_exceptions=True)
        self._closed.set()  # not a cancellation: redis-py may swallow one mid-request
        if self._renewer is not None:
            await asyncio.gather(self._renewer, return_exceptions=True)
