"""Queued calls sealed at rest: AES-GCM with a key the operator holds, never the store.

A call waiting in a throttling queue is written to disk (SQLite) or to Redis with what a
partner needs to accept it: an ``Authorization`` header, a body with a customer's data,
sometimes a key in the URL. With a data key set, those three are sealed before they are
written, so that a copy of the data dir, a backup or a Redis dump gives none of them; the
routing fields (org, sandbox, journey, queue, times) stay plain, as the store sorts by
them.

* AES-256-GCM (or 128/192, by the key's length) from ``cryptography``; a fresh 96-bit
  random nonce per seal. The call id is the associated data: a sealed blob moved to
  another row does not open.
* A blob starts with a version byte and the first 4 bytes of the key's SHA-256, so that
  the right key is tried first; the id tells nothing useful about the key.
* Several keys rotate: the first seals, every one opens. Calls sealed with a key that is
  no longer given cannot be read, and the store refuses to start rather than drop them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sluicegate.errors import InvalidInput, StorageError

_VERSION = b"\x01"
_NONCE = 12
_ID = 4
KEY_SIZES = (16, 24, 32)


def new_key() -> str:
    """A fresh 256-bit data key, as the settings take it (URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_keys(text: str) -> tuple[bytes, ...]:
    """Keys from their text: base64, comma-separated, the sealing one first."""
    keys = []
    for part in text.split(","):
        try:
            key = base64.urlsafe_b64decode(part.strip().encode())
        except (binascii.Error, ValueError):
            raise InvalidInput("INVALID_SETTINGS", "a data key is not base64") from None
        keys.append(key)
    check_keys(keys)
    return tuple(keys)


def check_keys(keys: Sequence[bytes]) -> None:
    for key in keys:
        if len(key) not in KEY_SIZES:
            raise InvalidInput(
                "INVALID_SETTINGS", f"a data key has 16, 24 or 32 bytes, not {len(key)}"
            )


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_ID]


class Sealer:
    """Seals and opens the secret parts of stored calls with the operator's keys."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        check_keys(keys)
        if not keys:
            raise InvalidInput("INVALID_SETTINGS", "a sealer needs at least one data key")
        self._sealing = (_key_id(keys[0]), AESGCM(keys[0]))
        self._opening = {_key_id(key): AESGCM(key) for key in reversed(keys)}

    def seal(self, plain: bytes, context: str) -> bytes:
        """``plain`` encrypted and authenticated, bound to ``context`` (the call id)."""
        key_id, aead = self._sealing
        nonce = os.urandom(_NONCE)
        return _VERSION + key_id + nonce + aead.encrypt(nonce, plain, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        """What :meth:`seal` sealed; :class:`~sluicegate.errors.StorageError` when no key
        given opens it (another key, or the blob was altered or moved)."""
        head = 1 + _ID + _NONCE
        aead = self._opening.get(sealed[1 : 1 + _ID]) if sealed[:1] == _VERSION else None
        if aead is None:
            raise StorageError(f"stored call {context!r} is sealed with a data key not given")
        try:
            return aead.decrypt(sealed[1 + _ID : head], sealed[head:], context.encode())
        except InvalidTag:
            raise StorageError(f"stored call {context!r} does not open: altered") from None
