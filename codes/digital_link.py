"""GS1 Digital Link URIs: ``https://<resolver>/01/<GTIN-14>/21/<serial>``.

The scanward code is the GS1 serial (AI 21), so the QR on a cap carries one URL that any GS1
resolver understands and that this service can verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from codes.errors import CodeError

GTIN_LENGTH = 14
_ACCEPTED_GTIN_LENGTHS = (8, 12, 13, 14)
_MAX_URL_LENGTH = 2048


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of the digits before it."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def normalize_gtin(gtin: str) -> str | None:
    """The GTIN-14 form of a GTIN-8/12/13/14 whose check digit is right, else None."""
    if not (gtin.isascii() and gtin.isdigit() and len(gtin) in _ACCEPTED_GTIN_LENGTHS):
        return None
    if gtin_check_digit(gtin[:-1]) != int(gtin[-1]):
        return None
    return gtin.zfill(GTIN_LENGTH)


@dataclass(frozen=True, slots=True)
class DigitalLink:
    gtin: str
    serial: str


def build(resolver: str, gtin: str, code: str) -> str:
    return f"{resolver.rstrip('/')}/01/{gtin}/21/{code}"


def looks_like_url(text: str) -> bool:
    return "/" in text


def parse(url: str) -> DigitalLink:
    """Read the GTIN and serial of a Digital Link URI; any resolver host and path prefix."""
    if len(url) > _MAX_URL_LENGTH:
        raise CodeError("malformed", "the URL is too long")
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # for example an unclosed IPv6 bracket in the host
        raise CodeError("malformed", "the URL cannot be parsed") from None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    for i in range(len(segments) - 3):
        if segments[i] == "01" and segments[i + 2] == "21":
            gtin = normalize_gtin(segments[i + 1])
            if gtin is None:
                raise CodeError("malformed", "the URL's GTIN (AI 01) is not a valid GTIN")
            return DigitalLink(gtin, segments[i + 3])
    raise CodeError("malformed", "the URL is not a GS1 Digital Link with /01/<GTIN>/21/<serial>")
