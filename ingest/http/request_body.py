"""Reading JSON request bodies into typed values, with 4xx errors that name the field."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ingest.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed


async def json_object(request: web.Request, max_bytes: int) -> JsonFields:
    require_json(request)
    return json_fields(await read_body(request, max_bytes), "body")


def require_json(request: web.Request) -> None:
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise UnsupportedMediaType("send the body as application/json")


MAX_JSON_DEPTH = 32
"""Levels of arrays and objects a body may nest; a territory needs 6, a campaign 4."""

# The closing quote of an object's key, whitespace, its colon (RFC 8259 whitespace only).
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
_CONTAINERS = frozenset({dict, list})


def json_fields(raw: bytes, what: str) -> JsonFields:
    """The fields of the JSON object in ``raw``; ``what`` names it in errors ("body", "line")."""
    document = parse_json(raw, what)
    if not isinstance(document, dict):
        raise BadRequest(f"the {what} must be a JSON object", "invalid_json")
    return JsonFields(document)


def parse_json(raw: bytes, what: str) -> object:
    """The JSON value in ``raw``, nested at most ``MAX_JSON_DEPTH`` deep (400 ``too_deep``,
    naming where) and without an object that has a key twice (400 ``duplicate_key``).

    orjson keeps the last of a repeated key, so repeats are found by counting. Let K be the
    members of all the objects in the text and P the keys of all the parsed dicts: P <= K, and
    P == K exactly when no object repeats a key ("a" and "\\u0061" are one key once parsed, so
    they count as a repeat). Every member has one colon after its key, outside strings; other
    colons are inside strings (a time "12:00", an escaped quote "a\\":"). Bytes of a multi-byte
    UTF-8 character are never quotes or colons.

    1. Colons in the text >= K; so if they equal P, K == P: no repeats. A scan body whose values
       hold no colon passes here, with three searches of its bytes.
    2. Without a \\u escape (or any) in the text, a string's colons are the same before and after
       decoding (no other escape makes one), and orjson writes them back as they are, and one
       after each key: the colons of the parsed value written again number P plus those of the
       strings, the text's K plus the same. Equal counts then prove K == P, unequal ones a
       repeat.
    3. Otherwise each key ends with a quote byte, JSON whitespace and its colon, matched by
       ``_KEY_END`` once per key (matches cannot overlap: whitespace holds no quote), so K <=
       the matches: if they equal P, K == P. Only if not does a strict parse look for the key.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the {what} is not valid JSON: {error}", "invalid_json") from None
    if type(document) is dict and b"[" not in raw and raw.count(b"{") == 1:
        keys = len(document)  # one object, no arrays: a flat object, as a scan's body is
    else:
        keys = _count_keys(document, what)
    colons = raw.count(b":")
    if colons == keys:
        return document
    if b"\\" not in raw:  # no escape at all (one byte: a faster search than for \\u)
        unique = orjson.dumps(document).count(b":") == colons
    else:
        unique = len(_KEY_END.findall(raw)) == keys
    if not unique:
        _refuse_duplicate_keys(raw, what)
    return document


def _count_keys(document: object, what: str) -> int:
    """The keys of all objects in ``document``, walked a level at a time (no recursion, and
    mostly in C), refusing a document nested deeper than ``MAX_JSON_DEPTH``."""
    keys, depth = 0, 0
    level: list[Any] = [document]
    kinds: set[type] = {type(document)}
    while kinds & _CONTAINERS:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(
                f"{_deep_path(document, what)}: the {what} nests arrays and objects more than "
                f"{MAX_JSON_DEPTH} deep",
                "too_deep",
            )
        if not kinds <= _CONTAINERS:
            level = [value for value in level if type(value) in _CONTAINERS]
        if dict in kinds:
            keys += sum(len(value) for value in level if type(value) is dict)
            level = list(
                itertools.chain.from_iterable(
                    value.values() if type(value) is dict else value for value in level
                )
            )
        else:
            level = list(itertools.chain.from_iterable(level))
        kinds = set(map(type, level))
    return keys


def _deep_path(document: object, what: str) -> str:
    """Where the first container nested deeper than ``MAX_JSON_DEPTH`` is, e.g. body.a[1].b."""
    stack: list[tuple[object, str, int]] = [(document, what, 1)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return path
        members = value.items() if isinstance(value, dict) else enumerate(cast(list[object], value))
        for key, child in reversed(list(members)):
            if type(child) in _CONTAINERS:
                stack.append((child, path + _step(key), depth + 1))
    return what


def _step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if key.isidentifier() else f"[{orjson.dumps(key).decode()[:40]}]"


def _refuse_duplicate_keys(raw: bytes, what: str) -> None:
    """A strict parse that names the first key an object repeats; the depth is already bounded,
    so ``json`` cannot recurse too deep."""

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        found: dict[str, object] = {}
        for name, value in pairs:
            if name in found:
                raise _DuplicateKey(name)
            found[name] = value
        return found

    try:
        json.loads(raw, object_pairs_hook=unique)
    except _DuplicateKey as error:
        name = orjson.dumps(error.args[0]).decode()
        raise BadRequest(
            f"the {what} has the key {name[:80]} twice in one object", "duplicate_key"
        ) from None
    except ValueError as error:  # json is the laxer parser: not expected after orjson's yes
        raise BadRequest(f"the {what} is not valid JSON: {error}", "invalid_json") from None


class _DuplicateKey(Exception):
    """An object repeats a key (raised inside the strict parse)."""


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body however it arrives (several TCP segments, chunked), up to ``max_bytes``."""
    too_large = PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    try:
        if request.content_length is not None:  # the common case, read in one call
            if request.content_length > max_bytes:
                raise too_large
            body = await request.read()
            if len(body) > max_bytes:  # a compressed body can grow
                raise too_large
            return body
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
    except web.HTTPRequestEntityTooLarge:  # aiohttp's own limit, as a compressed body grows
        raise too_large from None
    except (RequestPayloadError, ConnectionResetError) as error:  # the latter: client gone
        raise BadRequest(f"the body could not be read: {error}", "unreadable_body") from None
    return b"".join(chunks)


class JsonFields:
    """Typed access to the fields of one JSON object; unknown fields are an error."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self._read: set[str] = set()

    def text(self, name: str, *, default: str | None = None, max_length: int = 256) -> str:
        return _checked_text(name, self._get(name, default), max_length)

    def optional_text(self, name: str, *, max_length: int = 256) -> str | None:
        value = self._optional(name)
        return None if value is None else _checked_text(name, value, max_length)

    def optional_number(self, name: str, minimum: float, maximum: float) -> float | None:
        value = self._optional(name)
        if value is None:
            return None
        if type(value) is not float and type(value) is not int:  # bool is no number here
            raise ValidationFailed(f"{name} must be a number")
        if not minimum <= value <= maximum:
            raise ValidationFailed(f"{name} must be between {minimum:g} and {maximum:g}")
        return float(value)

    def integer(self, name: str, *, default: int | None = None) -> int:
        value = self._get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationFailed(f"{name} must be an integer")
        return value

    def optional_integer(self, name: str) -> int | None:
        return None if self._optional(name) is None else self.integer(name)

    def text_list(self, name: str, *, max_items: int, max_length: int = 256) -> list[str]:
        value = self._get(name, None)
        if not isinstance(value, list) or not 1 <= len(value) <= max_items:
            raise ValidationFailed(f"{name} must be a list of 1 to {max_items} strings")
        return [_checked_text(f"{name}[{i}]", item, max_length) for i, item in enumerate(value)]

    def document(self, name: str) -> object:
        """A JSON value of any shape, for a parser of its own (GeoJSON)."""
        return self._get(name, None)

    def present(self, name: str) -> bool:
        return self._document.get(name) is not None

    def done(self) -> None:
        """Reject fields the endpoint does not know: a typo should not pass silently."""
        unknown = sorted(set(self._document) - self._read)
        if unknown:
            raise ValidationFailed(f"unknown field(s): {', '.join(unknown)}")

    def _optional(self, name: str) -> Any:
        self._read.add(name)
        return self._document.get(name)

    def _get(self, name: str, default: object) -> object:
        self._read.add(name)
        value = self._document.get(name)
        if value is None:
            if default is None:
                raise ValidationFailed(f"{name} is required")
            return default
        return value


def _checked_text(name: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string")
    if len(value) > max_length:
        raise ValidationFailed(f"{name} must be at most {max_length} characters")
    if not value.isprintable():
        raise ValidationFailed(f"{name} must contain printable characters only")
    return value
