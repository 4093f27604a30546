"""Encryption at rest in Temporal: an AES-256-GCM payload codec.

With ``TIDEFLOW_ENCRYPTION_KEYS=ID:BASE64KEY[,ID:BASE64KEY...]`` (32-byte keys, base64), every
client, worker and API of Tideflow encrypts each payload it hands to Temporal — workflow inputs
and results, activity inputs and outputs, signals, updates, queries, memos, heartbeats and
failure messages (moved into an encoded attribute) — with the FIRST key, and decrypts with
whichever listed key a payload names. Keys rotate by putting a new key first and keeping the
old ones listed until no run (nor the retention window) needs them.

An encrypted payload is ``{"encoding": "binary/encrypted", "encryption-key-id": ID,
"tideflow-workflow-id": WF}`` around ``nonce (12 bytes) || ciphertext+tag`` of the original
payload's protobuf bytes. The key id and the workflow id are authenticated (GCM's associated
data): a payload cannot be moved to another run's metadata without failing to decrypt, which is
what lets the codec server decode a definition-limited role's payloads only for its own runs.

Payloads the codec did not encrypt pass through :meth:`EncryptionCodec.decode` unchanged, so
runs started before encryption was turned on stay readable, and the run's static summary (its
title in the Web UI), passed pre-encoded, stays plain. Search attributes never go through a
codec. Payloads above the payload store threshold are encrypted before they are stored, so the
store's blobs are ciphertext too.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

KEYS_VARIABLE = "TIDEFLOW_ENCRYPTION_KEYS"
"""The environment variable holding the keys: ``ID:BASE64KEY[,ID:BASE64KEY...]``."""

ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of an encrypted payload (the name Temporal's samples use)."""

KEY_ID = "encryption-key-id"
"""Metadata naming the key a payload was encrypted with."""

WORKFLOW_ID = "tideflow-workflow-id"
"""Metadata naming the run a payload belongs to (absent when the SDK gave no context)."""

KEY_BYTES = 32
_NONCE_BYTES = 12


class EncryptionError(Exception):
    """A payload cannot be decrypted: unknown key id, wrong key, or altered data."""


class KeyConfigError(ValueError):
    """``TIDEFLOW_ENCRYPTION_KEYS`` is malformed (the message never contains key material)."""


@dataclass(frozen=True)
class EncryptionKeys:
    """Keys by id, in the order given: the first encrypts, every one decrypts."""

    keys: Mapping[str, bytes]

    @property
    def current(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return next(iter(self.keys))

    @classmethod
    def parse(cls, text: str) -> EncryptionKeys:
        """Keys from ``ID:BASE64KEY[,ID:BASE64KEY...]``; :class:`KeyConfigError` names the
        faulty entry by its position and id, never its key."""
        keys: dict[str, bytes] = {}
        entries = [part.strip() for part in text.split(",") if part.strip()]
        if not entries:
            raise KeyConfigError(f"{KEYS_VARIABLE} is empty: write ID:BASE64KEY[,ID:BASE64KEY]")
        for position, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            where = f"{KEYS_VARIABLE} entry {position}"
            if not sep or not key_id or not encoded.strip():
                raise KeyConfigError(f"{where}: write it as ID:BASE64KEY")
            if not key_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise KeyConfigError(f"{where}: the key id may hold letters, digits, - _ . only")
            if key_id in keys:
                raise KeyConfigError(f"{where}: key id {key_id!r} is listed twice")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyConfigError(f"{where} ({key_id!r}): the key is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise KeyConfigError(
                    f"{where} ({key_id!r}): the key is {len(key)} bytes; AES-256 keys are "
                    f"{KEY_BYTES} bytes (make one with: tideflow encryption-key)"
                )
            keys[key_id] = key
        return cls(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EncryptionKeys | None:
        """The keys of ``TIDEFLOW_ENCRYPTION_KEYS``, or None when it is unset or blank."""
        text = (os.environ if environ is None else environ).get(KEYS_VARIABLE, "")
        return cls.parse(text) if text.strip() else None


def new_key() -> str:
    """A fresh random 32-byte key, base64 (what ``tideflow encryption-key`` prints)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def is_encrypted(payload: Payload) -> bool:
    """Whether ``payload`` is one this codec encrypted."""
    return payload.metadata.get("encoding") == ENCODING


def workflow_of(payload: Payload) -> str | None:
    """The run an encrypted payload is bound to, if it names one."""
    value = payload.metadata.get(WORKFLOW_ID)
    return value.decode("utf-8", "replace") if value else None


def _associated_data(key_id: bytes, workflow_id: bytes) -> bytes:
    return b"tideflow/1\0" + key_id + b"\0" + workflow_id


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over whole payloads (see the module's docstring)."""

    def __init__(self, keys: EncryptionKeys, workflow_id: str | None = None) -> None:
        """Encrypt with ``keys.current``; ``workflow_id`` binds new payloads to a run (the SDK
        sets it through :meth:`with_context`)."""
        self._keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}
        self._workflow_id = workflow_id

    @property
    def keys(self) -> EncryptionKeys:
        """The keys this codec uses."""
        return self._keys

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """This codec bound to the run of ``context`` (workflow and activity payloads)."""
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        if workflow_id == self._workflow_id:
            return self
        return EncryptionCodec(self._keys, workflow_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (one already encrypted is kept as it is)."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; others pass through unchanged."""
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the current key."""
        if is_encrypted(payload):
            return payload
        key_id = self._keys.current
        workflow = (self._workflow_id or "").encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(), _associated_data(key_id.encode(), workflow)
        )
        metadata = {"encoding": ENCODING, KEY_ID: key_id.encode()}
        if workflow:
            metadata[WORKFLOW_ID] = workflow
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted (unchanged when it is not encrypted)."""
        if not is_encrypted(payload):
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._keys.keys)
            raise EncryptionError(
                f"a payload is encrypted with key id {key_id!r}, which is not among the keys of "
                f"{KEYS_VARIABLE} ({known}): add that key to the list to read it"
            )
        data = payload.data
        aad = _associated_data(key_id.encode(), payload.metadata.get(WORKFLOW_ID, b""))
        try:
            plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise EncryptionError(
                f"a payload encrypted with key id {key_id!r} does not decrypt with that key: "
                "the key differs from the one that encrypted it, or the payload was altered"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def codec_from_env(environ: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """The codec of ``TIDEFLOW_ENCRYPTION_KEYS``, or None when encryption is off."""
    keys = EncryptionKeys.from_env(environ)
    return EncryptionCodec(keys) if keys else None
