"""Numbers as the benchmark reports print them."""

from __future__ import annotations

TIMES = "\N{MULTIPLICATION SIGN}"  # by name: ruff flags the literal as confusable with x


def human_number(value: float | None) -> str:
    """Thousands separators for large numbers, three significant digits for small ones."""
    if value is None:
        return "—"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}"
