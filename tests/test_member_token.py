"""Signed member tokens (``rewards.member_token``): issued and verified without I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.cli import main
from rewards.errors import MemberError
from rewards.member_token import (
    MAX_LIFETIME_S,
    MAX_TOKEN_LENGTH,
    MemberTokenSecret,
    Refusal,
)

CURRENT = "current-secret-0123456789abcdef0123"
PREVIOUS = "previous-secret-0123456789abcdef012"
NOW = 1_800_000_000
member_ids = st.text(min_size=1, max_size=64).filter(str.isprintable)


def secret(*texts: str) -> MemberTokenSecret:
    return MemberTokenSecret(texts or (CURRENT,))


@given(member_ids, st.integers(1, MAX_LIFETIME_S))
def test_a_token_verifies_as_its_member_until_it_expires(member_id: str, ttl: int) -> None:
    token = secret().issue(member_id, NOW + ttl)

    assert secret().verify(token, NOW) == member_id
    assert secret().verify(token, NOW + ttl - 1) == member_id
    assert secret().verify(token, NOW + ttl) is Refusal.EXPIRED
    assert len(token) <= MAX_TOKEN_LENGTH
    assert set(token) <= set(string.ascii_letters + string.digits + "._-")  # URL-safe


def test_the_format_is_what_a_brand_computes_with_the_standard_library() -> None:
    """The recipe in the docs: HMAC-SHA256 over 'v1.<base64url id>.<expiry>', base64url."""
    signed = "v1." + base64.urlsafe_b64encode(b"alice").rstrip(b"=").decode() + f".{NOW + 60}"
    mac = hmac.new(CURRENT.encode(), signed.encode(), hashlib.sha256).digest()
    token = signed + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    assert secret().issue("alice", NOW + 60) == token
    assert secret().verify(token, NOW) == "alice"


def test_the_readme_recipe_issues_tokens_that_verify() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    [recipe] = [block for block in readme.split("```python\n")[1:] if "def member_token" in block]
    names: dict[str, Any] = {}
    exec(recipe.split("```")[0], names)

    token = names["member_token"](CURRENT, "alice", ttl_s=60)

    assert secret().verify(token, time.time()) == "alice"


@given(member_ids, st.data())
def test_any_change_to_a_token_is_refused(member_id: str, data: st.DataObject) -> None:
    token = secret().issue(member_id, NOW + 600)
    at = data.draw(st.integers(0, len(token) - 1))
    changed = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[at]))
    tampered = token[:at] + changed + token[at + 1 :]

    assert isinstance(secret().verify(tampered, NOW), Refusal)


def test_a_changed_member_or_expiry_is_a_bad_signature() -> None:
    version, member, expiry, mac = secret().issue("alice", NOW + 600).split(".")
    mallory = base64.urlsafe_b64encode(b"mallory").rstrip(b"=").decode()

    assert secret().verify(f"{version}.{mallory}.{expiry}.{mac}", NOW) is Refusal.BAD_SIGNATURE
    later = f"{version}.{member}.{int(expiry) + 3600}.{mac}"
    assert secret().verify(later, NOW) is Refusal.BAD_SIGNATURE


def test_the_previous_secret_is_accepted_while_rotating() -> None:
    old_token = secret(PREVIOUS).issue("alice", NOW + 600)
    rotating = secret(CURRENT, PREVIOUS)

    assert rotating.verify(old_token, NOW) == "alice"
    assert secret(CURRENT).verify(old_token, NOW) is Refusal.BAD_SIGNATURE
    assert (
        secret(CURRENT).verify(rotating.issue("bob", NOW + 600), NOW) == "bob"
    )  # signs with the first


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    too_long = secret().issue("alice", NOW + MAX_LIFETIME_S + 3600)

    assert secret().verify(too_long, NOW) is Refusal.TOO_LONG_LIVED


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1...",
        "v2.YWxpY2U.1800000600.AAAA",
        "v1.YWxpY2U.1800000600",
        "v1.YWxpY2U.01800000600." + "A" * 43,  # expiry with a leading zero
        "v1.YWxpY2U.+1800000600." + "A" * 43,
        "v1.YWxp+2U.1800000600." + "A" * 43,  # not base64url
        "v1.YWxpY2U.1800000600." + "A" * 44,
        "v1.YWxpY2U.١٨٠٠٠٠٠٦٠٠." + "A" * 43,  # digits of another script
        "v1." + "A" * 400 + ".1800000600." + "A" * 43,
        "x" * 100_000,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert secret().verify(token, NOW) is Refusal.MALFORMED


@given(st.text(max_size=600))
def test_verifying_any_text_answers_without_raising(text: str) -> None:
    assert isinstance(secret().verify(text, NOW), Refusal)


@pytest.mark.parametrize("member_id", ["", "a" * 65, "tab\there"])
def test_issuing_for_a_bad_member_id_is_refused(member_id: str) -> None:
    with pytest.raises(MemberError):
        secret().issue(member_id, NOW + 60)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("short", "at least 32"),
        (f"{CURRENT},short", "at least 32"),
        (f"{CURRENT},{PREVIOUS},{CURRENT}x", "at most 2"),
    ],
)
def test_secrets_are_checked_without_showing_them(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        MemberTokenSecret.from_text(text)

    assert "short" not in str(refused.value)
    assert CURRENT not in str(refused.value)


def test_a_secret_never_shows_in_its_repr() -> None:
    rotating = MemberTokenSecret.from_text(f" {CURRENT} , {PREVIOUS} ")

    assert CURRENT not in repr(rotating)
    assert PREVIOUS not in repr(rotating)
    assert rotating.verify(secret(PREVIOUS).issue("alice", NOW + 60), NOW) == "alice"


def test_the_cli_issues_a_token_with_the_secret_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCANWARD_MEMBER_TOKEN_SECRET", f"{CURRENT},{PREVIOUS}")

    assert main(["member-token", "--member", "alice", "--ttl", "3600"]) == 0

    out = capsys.readouterr().out
    assert CURRENT not in out
    _, _, expiry, _ = out.strip().split(".")
    assert secret().verify(out.strip(), int(expiry) - 3600) == "alice"


@pytest.mark.parametrize(
    ("env", "argv", "says"),
    [
        (None, ["--member", "alice"], "SCANWARD_MEMBER_TOKEN_SECRET"),
        (CURRENT, ["--member", "alice", "--ttl", str(MAX_LIFETIME_S + 1)], "--ttl"),
        (CURRENT, ["--member", "alice", "--ttl", "0"], "--ttl"),
        (CURRENT, ["--member", "a" * 65], "member id"),
        ("tiny-secret-value", ["--member", "alice"], "SCANWARD_MEMBER_TOKEN_SECRET: each secret"),
    ],
)
def test_the_cli_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: str | None,
    argv: list[str],
    says: str,
) -> None:
    monkeypatch.delenv("SCANWARD_MEMBER_TOKEN_SECRET", raising=False)
    if env:
        monkeypatch.setenv("SCANWARD_MEMBER_TOKEN_SECRET", env)

    assert main(["member-token", *argv]) != 0

    captured = capsys.readouterr()
    assert captured.out == ""
    assert says in captured.err
    assert "Traceback" not in captured.err
    assert env is None or env not in captured.err
