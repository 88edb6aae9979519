"""From flags to a verdict and a risk level: one table, configurable.

Every rule names what it saw with a flag; the table says what each flag means for the consumer
(the verdict) and for the brand (a risk level 0-4 that rewards and alerts act on). A scan takes
the most severe verdict and the highest risk among its flags; a scan without flags is genuine,
risk 0.

| flag                                                   | verdict     | risk |
|--------------------------------------------------------|-------------|------|
| malformed, bad_signature, unknown_key, unknown_serial, | counterfeit | 4    |
| gtin_mismatch, cloned                                  |             |      |
| revoked                                                | revoked     | 3    |
| not_shipped, device_farm, address_farm, overscanned,   | suspicious  | 3    |
| guessing                                               |             |      |
| out_of_territory                                       | genuine     | 2    |
| no_location                                            | genuine     | 1    |

Diverted goods are real goods sold in the wrong place: the consumer is told they are genuine,
the brand sees the risk. Risk 3 gets no high-value prize, 4 gets nothing (rewards). The rules
on client addresses (address_farm, and the address's guessing count) flag households and carrier
NAT too when past their thresholds: where many honest phones share an address, raise the
thresholds, or rule ``address_farm`` genuine with risk 3 here (no high-value prize, no alarm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import NamedTuple

from fraud.errors import PolicyError


class Verdict(IntEnum):
    """Ordered by severity for ``judge``; the values are stored in events, so never renumber."""

    GENUINE = 1
    COUNTERFEIT = 2
    REVOKED = 3
    SUSPICIOUS = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.GENUINE: 0, Verdict.SUSPICIOUS: 1, Verdict.REVOKED: 2, Verdict.COUNTERFEIT: 3}

MAX_RISK = 4


class Ruling(NamedTuple):
    """A verdict and a risk: what one flag rules, or all of a scan's flags together."""

    verdict: Verdict
    risk: int


COUNTERFEIT_FLAGS = ("malformed", "bad_signature", "unknown_key", "unknown_serial", "gtin_mismatch")

DEFAULT_RULINGS: Mapping[str, Ruling] = {
    **{flag: Ruling(Verdict.COUNTERFEIT, 4) for flag in COUNTERFEIT_FLAGS},
    "cloned": Ruling(Verdict.COUNTERFEIT, 4),
    "revoked": Ruling(Verdict.REVOKED, 3),
    "not_shipped": Ruling(Verdict.SUSPICIOUS, 3),
    "device_farm": Ruling(Verdict.SUSPICIOUS, 3),
    "address_farm": Ruling(Verdict.SUSPICIOUS, 3),
    "overscanned": Ruling(Verdict.SUSPICIOUS, 3),
    "guessing": Ruling(Verdict.SUSPICIOUS, 3),
    "out_of_territory": Ruling(Verdict.GENUINE, 2),
    "no_location": Ruling(Verdict.GENUINE, 1),
}

GENUINE = Ruling(Verdict.GENUINE, 0)


def judge(flags: Iterable[str], rulings: Mapping[str, Ruling]) -> Ruling:
    """The most severe verdict and the highest risk of ``flags``."""
    verdict, risk = GENUINE
    for flag in flags:
        ruling = rulings[flag]
        if ruling.verdict.severity > verdict.severity:
            verdict = ruling.verdict
        risk = max(risk, ruling.risk)
    return Ruling(verdict, risk)


def parse_rulings(overrides: Mapping[str, object]) -> dict[str, Ruling]:
    """The default table with ``overrides`` (``{"flag": ["verdict", risk]}``) applied."""
    table = dict(DEFAULT_RULINGS)
    for flag, value in overrides.items():
        if flag not in table:
            raise PolicyError(f"verdicts: unknown flag {flag!r} (known: {', '.join(table)})")
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise PolicyError(f"verdicts.{flag} must be [verdict, risk]")
        label, risk = value
        try:
            verdict = Verdict[str(label).upper()]
        except KeyError:
            names = ", ".join(v.label for v in Verdict)
            raise PolicyError(f"verdicts.{flag}: verdict must be one of {names}") from None
        if not isinstance(risk, int) or isinstance(risk, bool) or not 0 <= risk <= MAX_RISK:
            raise PolicyError(f"verdicts.{flag}: risk must be an integer 0 to {MAX_RISK}")
        table[flag] = Ruling(verdict, risk)
    return table
