from __future__ import annotations

import contextlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codes import crockford, signing
from codes.batch_index import BatchIndex
from codes.batches import BatchOrder
from codes.errors import CodeError
from codes.keyring import Keyring
from codes.verify import Verifier

values = st.integers(min_value=0, max_value=2**100 - 1)
BATCH = BatchOrder.create("SKU", "4006381333931", 10_000, max_quantity=10_000).reserved(
    "BTEST", 0, 0, 500
)


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(Keyring.new(), BatchIndex([BATCH]))


@given(values)
def test_encode_decode_round_trip(value: int) -> None:
    text = crockford.encode(value)
    assert len(text) == 20
    assert crockford.decode(text) == value
    assert crockford.decode(text.lower()) == value
    assert crockford.decode("-".join(text[i : i + 5] for i in range(0, 20, 5))) == value


def test_look_alikes_are_read_as_digits() -> None:
    assert crockford.decode("O" * 10 + "I" * 5 + "l" * 5) == crockford.decode("0" * 10 + "1" * 10)


@given(st.text(max_size=40))
def test_arbitrary_text_decodes_or_returns_none(text: str) -> None:
    value = crockford.decode(text)
    assert value is None or 0 <= value < 2**100


@pytest.mark.parametrize(
    "text",
    [
        "+" + "0" * 19,
        "0" * 10 + "_" + "0" * 9,
        "0" * 19 + "U",
        " " + "0" * 19 + "\t",
        "0" * 19 + "٣",
        "0" * 21,
    ],
)
def test_near_misses_are_rejected(text: str) -> None:
    assert crockford.decode(text) is None


def test_many_codes_encode_like_one(verifier: Verifier) -> None:
    signer = verifier.signer(BATCH)
    text = signer.sign_range(BATCH.first_serial, 101).decode()
    assert [text[i : i + 20] for i in range(0, len(text), 20)] == [
        str(signer.sign(serial)) for serial in range(BATCH.first_serial, BATCH.first_serial + 101)
    ]


@given(st.integers(min_value=0, max_value=BATCH.quantity - 1))
def test_every_generated_code_verifies(verifier: Verifier, index: int) -> None:
    code = str(verifier.signer(BATCH).sign(BATCH.first_serial + index))
    verified = verifier.verify(code)
    assert verified.batch == BATCH
    assert verified.serial == BATCH.first_serial + index
    assert verified.canonical == code


@given(
    st.integers(min_value=0, max_value=BATCH.quantity - 1),
    st.integers(min_value=0, max_value=19),
    st.sampled_from(crockford.ALPHABET),
)
def test_any_single_character_change_is_rejected(
    verifier: Verifier, index: int, position: int, replacement: str
) -> None:
    code = str(verifier.signer(BATCH).sign(BATCH.first_serial + index))
    changed = code[:position] + replacement + code[position + 1 :]
    if changed == code:
        return
    with pytest.raises(CodeError):
        verifier.verify(changed)


@given(st.text(max_size=80))
def test_arbitrary_strings_raise_only_code_error(verifier: Verifier, text: str) -> None:
    with contextlib.suppress(CodeError):
        verifier.verify(text)


def test_rejection_reasons(verifier: Verifier) -> None:
    signer = verifier.signer(BATCH)
    good = signer.sign(BATCH.first_serial)
    cases = {
        "not a code": "malformed",
        str(signing.Code(5, BATCH.first_serial, good.tag)): "unknown_key",
        str(signer.sign(BATCH.last_serial + 1)): "unknown_serial",
        str(good._replace(tag=good.tag ^ 1)): "bad_signature",
        f"https://x.example/01/09506000134352/21/{good}": "gtin_mismatch",
        "https://x.example/01/09506000134353/21/X": "malformed",
    }
    for text, reason in cases.items():
        with pytest.raises(CodeError) as caught:
            verifier.verify(text)
        assert caught.value.reason == reason, text
    assert verifier.verify(f"https://any.example/p/01/{BATCH.gtin}/21/{good}").serial == good.serial


def test_codes_of_a_retired_key_are_rejected() -> None:
    keyring = Keyring.new().rotate()
    old_batch = BATCH
    new_batch = BatchOrder.create("SKU", "4006381333931", 10, max_quantity=10).reserved(
        "BNEW", 1, 0, 20_000
    )
    before = Verifier(keyring, BatchIndex([old_batch, new_batch]))
    old_code = str(before.signer(old_batch).sign(old_batch.first_serial))
    new_code = str(before.signer(new_batch).sign(new_batch.first_serial))
    before.verify(old_code)

    after = Verifier(keyring.retire(0), BatchIndex([old_batch, new_batch]))
    with pytest.raises(CodeError) as caught:
        after.verify(old_code)
    assert caught.value.reason == "unknown_key"
    assert after.verify(new_code).batch == new_batch


@given(st.binary(min_size=1, max_size=64), st.integers(0, 15), st.integers(0, 2**40 - 1))
def test_tags_are_the_standard_hmac_sha256(key: bytes, key_id: int, serial: int) -> None:
    message = bytes((key_id,)) + serial.to_bytes(5, "big")
    expected = int.from_bytes(hmac.digest(key, message, "sha256")[:7], "big")
    assert signing.Signer(key, key_id).sign(serial).tag == expected
