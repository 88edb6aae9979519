"""Reading JSON request bodies into typed values, with 4xx errors that name the field."""

from __future__ import annotations

from typing import Any

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


def json_fields(raw: bytes, what: str) -> JsonFields:
    """The fields of the JSON object in ``raw``; ``what`` names it in errors ("body", "line")."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the {what} is not valid JSON: {error}", "invalid_json") from None
    if not isinstance(document, dict):
        raise BadRequest(f"the {what} must be a JSON object", "invalid_json")
    return JsonFields(document)


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
    except RequestPayloadError as error:
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
