"""A batch's codes as printer files (txt, csv, Digital Link URLs), generated chunk by chunk.

Every line's length is known in advance, so the exact byte size of any slice is computed without
generating it: a printer's download shows progress and memory stays flat at any batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from codes import digital_link
from codes.batches import Batch
from codes.crockford import CODE_LENGTH
from codes.errors import BatchError
from codes.signing import Signer

CHUNK_CODES = 4096
CSV_HEADER = b"serial,code,url\n"


class ExportFormat(StrEnum):
    TXT = "txt"
    CSV = "csv"
    URL = "url"

    @property
    def media_type(self) -> str:
        return "text/csv" if self is ExportFormat.CSV else "text/plain"


def _total_digits(first: int, count: int) -> int:
    """How many decimal digits the integers first .. first+count-1 have together."""
    total, low, high = 0, first, first + count
    width = len(str(first))
    while low < high:
        bound = min(high, 10**width)
        total += (bound - low) * width
        low, width = bound, width + 1
    return total


@dataclass(frozen=True, slots=True)
class CodeExport:
    batch: Batch
    signer: Signer
    fmt: ExportFormat
    resolver: str
    offset: int
    count: int

    @classmethod
    def slice(
        cls,
        batch: Batch,
        signer: Signer,
        fmt: ExportFormat,
        resolver: str,
        offset: int,
        limit: int | None,
    ) -> CodeExport:
        """The codes from ``offset`` on, at most ``limit`` of them (all the rest when None)."""
        if not 0 <= offset <= batch.quantity:
            raise BatchError(f"offset must be between 0 and the batch quantity {batch.quantity}")
        remaining = batch.quantity - offset
        count = remaining if limit is None else min(limit, remaining)
        return cls(batch, signer, fmt, resolver, offset, count)

    @property
    def _url_prefix(self) -> bytes:
        return digital_link.build(self.resolver, self.batch.gtin, "").encode()

    def content_length(self) -> int:
        if self.fmt is ExportFormat.TXT:
            return self.count * (CODE_LENGTH + 1)
        url_line = len(self._url_prefix) + CODE_LENGTH + 1
        if self.fmt is ExportFormat.URL:
            return self.count * url_line
        serial_digits = _total_digits(self.batch.first_serial + self.offset, self.count)
        return len(CSV_HEADER) + serial_digits + self.count * (CODE_LENGTH + 2 + url_line)

    def chunks(self, chunk_codes: int = CHUNK_CODES) -> Iterator[bytes]:
        if self.fmt is ExportFormat.CSV:
            yield CSV_HEADER
        first = self.batch.first_serial + self.offset
        for start in range(first, first + self.count, chunk_codes):
            count = min(chunk_codes, first + self.count - start)
            yield self._lines(start, self.signer.sign_range(start, count))

    def _lines(self, first_serial: int, codes: bytes) -> bytes:
        if self.fmt is ExportFormat.CSV:
            url_prefix = self._url_prefix.decode()
            text = codes.decode()
            lines = []
            for i, start in enumerate(range(0, len(text), CODE_LENGTH)):
                code = text[start : start + CODE_LENGTH]
                lines.append(f"{first_serial + i},{code},{url_prefix}{code}\n")
            return "".join(lines).encode()
        prefix = self._url_prefix if self.fmt is ExportFormat.URL else b""
        rows = np.frombuffer(codes, dtype=np.uint8).reshape(-1, CODE_LENGTH)
        table = np.empty((rows.shape[0], len(prefix) + CODE_LENGTH + 1), dtype=np.uint8)
        table[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        table[:, len(prefix) : -1] = rows
        table[:, -1] = ord("\n")
        return table.tobytes()
