from __future__ import annotations

from pathlib import Path

import pytest

from codes.errors import KeyringError
from codes.keyring import Keyring


def test_saved_keyring_loads_with_the_same_keys(tmp_path: Path) -> None:
    keyring = Keyring.new().rotate()
    keyring.save(tmp_path / "k.bin", "s3cret")
    assert Keyring.load(tmp_path / "k.bin", "s3cret") == keyring
    assert b"secret" not in (tmp_path / "k.bin").read_bytes()


def test_wrong_secret_fails_clearly(tmp_path: Path) -> None:
    Keyring.new().save(tmp_path / "k.bin", "right")
    with pytest.raises(KeyringError, match="SCANWARD_KEYRING_SECRET is wrong"):
        Keyring.load(tmp_path / "k.bin", "wrong")


def test_damaged_or_foreign_files_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "k.bin"
    Keyring.new().save(path, "right")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(KeyringError, match="damaged"):
        Keyring.load(path, "right")
    path.write_text("hello")
    with pytest.raises(KeyringError, match="not a scanward keyring"):
        Keyring.load(path, "right")
    with pytest.raises(KeyringError, match="keys init"):
        Keyring.load(tmp_path / "missing.bin", "right")


def test_rotation_makes_the_newest_key_current_and_keeps_old_ones() -> None:
    keyring = Keyring.new().rotate().rotate()
    assert keyring.current.key_id == 2
    assert keyring.key(0).active


def test_retirement_rules() -> None:
    keyring = Keyring.new()
    with pytest.raises(KeyringError, match="last active key"):
        keyring.retire(0)
    rotated = keyring.rotate().retire(1)
    assert rotated.current.key_id == 0
    with pytest.raises(KeyringError, match="not an active key"):
        rotated.retire(1)


def test_key_ids_are_limited_to_the_code_format() -> None:
    keyring = Keyring.new()
    for _ in range(15):
        keyring = keyring.rotate()
    with pytest.raises(KeyringError, match="16 key ids"):
        keyring.rotate()


def test_batch_keys_differ_per_batch_and_key() -> None:
    keyring = Keyring.new().rotate()
    keys = {keyring.batch_key(k, b) for k in (0, 1) for b in ("B1", "B2")}
    assert len(keys) == 4
