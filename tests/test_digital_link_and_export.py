from __future__ import annotations

import pytest

from codes import digital_link
from codes.batches import BatchOrder
from codes.errors import CodeError
from codes.export import CodeExport, ExportFormat, _total_digits
from codes.keyring import Keyring


@pytest.mark.parametrize(
    ("gtin", "normalized"),
    [
        ("4006381333931", "04006381333931"),
        ("96385074", "00000096385074"),
        ("036000291452", "00036000291452"),
        ("10614141000415", "10614141000415"),
        ("4006381333932", None),
        ("400638133393", None),
        ("4OO6381333931", None),
        ("", None),
    ],
)
def test_gtin_check_digit(gtin: str, normalized: str | None) -> None:
    assert digital_link.normalize_gtin(gtin) == normalized


def test_digital_link_round_trip() -> None:
    url = digital_link.build("https://id.example.com/", "04006381333931", "ABC")
    assert url == "https://id.example.com/01/04006381333931/21/ABC"
    assert digital_link.parse(url) == digital_link.DigitalLink("04006381333931", "ABC")
    assert digital_link.parse(url + "?linkType=all").serial == "ABC"


@pytest.mark.parametrize(
    "url",
    [
        "https://x/01/04006381333931",
        "https://x/21/ABC",
        "https://x/01/123/21/ABC",
        "https://x/" + "a" * 3000,
    ],
)
def test_bad_digital_links_are_malformed(url: str) -> None:
    with pytest.raises(CodeError) as caught:
        digital_link.parse(url)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(("first", "count"), [(1, 9), (1, 10), (5, 200), (999, 2), (7, 123_456)])
def test_total_digits(first: int, count: int) -> None:
    assert _total_digits(first, count) == sum(len(str(n)) for n in range(first, first + count))


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize(("offset", "count"), [(0, 1), (0, 1000), (3, 997), (990, 10), (500, 0)])
def test_content_length_is_exact(fmt: ExportFormat, offset: int, count: int) -> None:
    batch = BatchOrder.create("S", "4006381333931", 1000, max_quantity=1000).reserved(
        "BX", 0, 0, 95
    )
    signer = Keyring.new().signer(0, "BX")
    export = CodeExport(batch, signer, fmt, "https://id.example.com", offset, count)
    body = b"".join(export.chunks(chunk_codes=64))
    assert len(body) == export.content_length()
    lines = body.decode().splitlines()
    assert len(lines) == count + (fmt is ExportFormat.CSV)
