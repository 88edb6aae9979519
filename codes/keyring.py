"""Master keys: rotation, retirement, per-batch key derivation, encryption at rest.

A ``Keyring`` is immutable; ``rotate`` and ``retire`` return a new one that the caller saves.
On disk it is JSON sealed with AES-256-GCM under a key stretched by scrypt from
``SCANWARD_KEYRING_SECRET``, so the secret may be a passphrase.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from codes.errors import CodeError, KeyringError
from codes.signing import MAX_KEY_ID, Signer

_MAGIC = b"SWKR1"
_SALT_BYTES = 16
_NONCE_BYTES = 12
_MASTER_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class MasterKey:
    key_id: int
    secret: bytes
    created_at: int  # unix seconds
    retired_at: int | None = None

    @property
    def active(self) -> bool:
        return self.retired_at is None

    def describe(self) -> dict[str, object]:
        """Everything about the key except its secret."""
        return {
            "key_id": self.key_id,
            "created_at": self.created_at,
            "active": self.active,
            "retired_at": self.retired_at,
        }


@functools.lru_cache(maxsize=65536)
def derive_batch_key(master_secret: bytes, batch_id: str) -> bytes:
    """HKDF-SHA256(master, info = batch id): a key a packaging line can hold for one batch."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"scanward batch " + batch_id.encode()
    )
    return hkdf.derive(master_secret)


@dataclass(frozen=True, slots=True)
class Keyring:
    keys: tuple[MasterKey, ...]

    @classmethod
    def new(cls) -> Keyring:
        return cls((MasterKey(0, secrets.token_bytes(_MASTER_KEY_BYTES), int(time.time())),))

    @property
    def current(self) -> MasterKey:
        """The newest active key: the one new batches are signed with."""
        active = [k for k in self.keys if k.active]
        if not active:
            raise KeyringError("the keyring has no active key: run 'scanward keys rotate'")
        return max(active, key=lambda k: k.key_id)

    def key(self, key_id: int) -> MasterKey:
        """An active key by id; retired and unknown keys verify nothing."""
        for key in self.keys:
            if key.key_id == key_id and key.active:
                return key
        raise CodeError("unknown_key", f"key {key_id} is unknown or retired")

    def batch_key(self, key_id: int, batch_id: str) -> bytes:
        return derive_batch_key(self.key(key_id).secret, batch_id)

    def signer(self, key_id: int, batch_id: str) -> Signer:
        return Signer(self.batch_key(key_id, batch_id), key_id)

    def rotate(self) -> Keyring:
        next_id = max(k.key_id for k in self.keys) + 1
        if next_id > MAX_KEY_ID:
            raise KeyringError(f"all {MAX_KEY_ID + 1} key ids of the code format are used")
        key = MasterKey(next_id, secrets.token_bytes(_MASTER_KEY_BYTES), int(time.time()))
        return Keyring((*self.keys, key))

    def retire(self, key_id: int) -> Keyring:
        if not any(k.key_id == key_id and k.active for k in self.keys):
            raise KeyringError(f"key {key_id} is not an active key")
        if sum(k.active for k in self.keys) == 1:
            raise KeyringError(f"key {key_id} is the last active key: rotate before retiring it")
        return Keyring(
            tuple(
                replace(k, retired_at=int(time.time())) if k.key_id == key_id else k
                for k in self.keys
            )
        )

    def seal(self, secret: str) -> bytes:
        salt = os.urandom(_SALT_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        plain = orjson.dumps(
            [{**k.describe(), "secret": base64.b64encode(k.secret).decode()} for k in self.keys]
        )
        header = _MAGIC + salt
        return header + nonce + AESGCM(_stretch(secret, salt)).encrypt(nonce, plain, header)

    @classmethod
    def unseal(cls, blob: bytes, secret: str) -> Keyring:
        header_length = len(_MAGIC) + _SALT_BYTES
        if not blob.startswith(_MAGIC) or len(blob) < header_length + _NONCE_BYTES:
            raise KeyringError("this is not a scanward keyring file")
        header, salt = blob[:header_length], blob[len(_MAGIC) : header_length]
        nonce = blob[header_length : header_length + _NONCE_BYTES]
        sealed = blob[header_length + _NONCE_BYTES :]
        try:
            plain = AESGCM(_stretch(secret, salt)).decrypt(nonce, sealed, header)
        except InvalidTag:
            raise KeyringError(
                "the keyring cannot be decrypted: "
                "SCANWARD_KEYRING_SECRET is wrong or the file is damaged"
            ) from None
        return cls(
            tuple(
                MasterKey(
                    e["key_id"], base64.b64decode(e["secret"]), e["created_at"], e["retired_at"]
                )
                for e in orjson.loads(plain)
            )
        )

    def save(self, path: Path, secret: str) -> None:
        """Write atomically: readers see the old or the new keyring, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(self.seal(secret))
        temporary.chmod(0o600)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path, secret: str) -> Keyring:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(f"no keyring at {path}: run 'scanward keys init'") from None
        return cls.unseal(blob, secret)


def _stretch(secret: str, salt: bytes) -> bytes:
    if not secret:
        raise KeyringError("SCANWARD_KEYRING_SECRET is empty")
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(secret.encode())
