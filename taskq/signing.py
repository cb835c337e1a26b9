"""Optional HMAC-SHA256 message signing, with key rotation.

With signing keys configured (``App(signing_keys=[...])`` or
``TASKQ_SIGNING_KEYS=key1,key2``), every payload is signed with the first key
and verified, before any decoding, against all of them: deploy a new key as the
second one everywhere, then make it the first, then drop the old one. A payload
that is unsigned, or signed by no active key, is dead-lettered unread.

Signed payload layout: ``0xC1 'S'`` (0xC1 is never valid msgpack), the first 4
bytes of SHA-256 of the key (which key signed it), the 32-byte MAC, the body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from taskq.errors import ConfigurationError, MessageError

MAGIC = b"\xc1S"
#: Bytes a signature adds in front of a payload: the magic, a key fingerprint, the MAC.
SIGNATURE_BYTES = len(MAGIC) + 4 + 32


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


class Signer:
    """Signs with the first key; verifies with any (at most two: current and next/previous)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        raw = [_as_bytes(k) for k in keys]
        if len(raw) > 2:
            raise ConfigurationError("at most two signing keys may be active (for rotation)")
        if any(len(k) < 16 for k in raw):
            raise ConfigurationError("signing keys must be at least 16 bytes long")
        self._keys = {hashlib.sha256(k).digest()[:4]: k for k in raw}
        self._first = raw[0] if raw else None
        self.enabled = bool(raw)

    def sign(self, body: bytes) -> bytes:
        """``body`` with its signature in front (unchanged when signing is off)."""
        if self._first is None:
            return body
        fingerprint = hashlib.sha256(self._first).digest()[:4]
        mac = hmac.new(self._first, body, hashlib.sha256).digest()
        return MAGIC + fingerprint + mac + body

    def verify(self, data: bytes) -> bytes:
        """The body of a signed payload (``data`` itself when signing is off).

        Raises:
            MessageError: Signing is on and the payload is unsigned or its MAC is wrong.
        """
        if not self.enabled:
            if data[:2] == MAGIC:
                raise MessageError("payload is signed but this worker has no signing keys")
            return data
        if data[:2] != MAGIC or len(data) < SIGNATURE_BYTES:
            raise MessageError("unsigned payload (this worker requires signed messages)")
        key = self._keys.get(data[2:6])
        if key is None:
            raise MessageError("payload signed with a key that is not active here")
        body = data[SIGNATURE_BYTES:]
        if not hmac.compare_digest(
            data[6:SIGNATURE_BYTES], hmac.new(key, body, hashlib.sha256).digest()
        ):
            raise MessageError("bad payload signature")
        return body
