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
| not_shipped, device_farm, guessing                     | suspicious  | 3    |
| out_of_territory                                       | genuine     | 2    |
| no_location                                            | genuine     | 1    |

Diverted goods are real goods sold in the wrong place: the consumer is told they are genuine,
the brand sees the risk. Risk 3 gets no high-value prize, 4 gets nothing (rewards).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import NamedTuple


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


class Outcome(NamedTuple):
    verdict: Verdict
    risk: int


COUNTERFEIT_FLAGS = ("malformed", "bad_signature", "unknown_key", "unknown_serial", "gtin_mismatch")

DEFAULT_OUTCOMES: Mapping[str, Outcome] = {
    **{flag: Outcome(Verdict.COUNTERFEIT, 4) for flag in COUNTERFEIT_FLAGS},
    "cloned": Outcome(Verdict.COUNTERFEIT, 4),
    "revoked": Outcome(Verdict.REVOKED, 3),
    "not_shipped": Outcome(Verdict.SUSPICIOUS, 3),
    "device_farm": Outcome(Verdict.SUSPICIOUS, 3),
    "guessing": Outcome(Verdict.SUSPICIOUS, 3),
    "out_of_territory": Outcome(Verdict.GENUINE, 2),
    "no_location": Outcome(Verdict.GENUINE, 1),
}

GENUINE = Outcome(Verdict.GENUINE, 0)


def judge(flags: Iterable[str], outcomes: Mapping[str, Outcome]) -> Outcome:
    """The most severe verdict and the highest risk of ``flags``."""
    verdict, risk = GENUINE
    for flag in flags:
        outcome = outcomes[flag]
        if outcome.verdict.severity > verdict.severity:
            verdict = outcome.verdict
        risk = max(risk, outcome.risk)
    return Outcome(verdict, risk)


def parse_outcomes(overrides: Mapping[str, object]) -> dict[str, Outcome]:
    """The default table with ``overrides`` (``{"flag": ["verdict", risk]}``) applied."""
    table = dict(DEFAULT_OUTCOMES)
    for flag, value in overrides.items():
        if flag not in table:
            raise ValueError(f"verdicts: unknown flag {flag!r} (known: {', '.join(table)})")
        if not (isinstance(value, list | tuple) and len(value) == 2):
            raise ValueError(f"verdicts.{flag} must be [verdict, risk]")
        label, risk = value
        try:
            verdict = Verdict[str(label).upper()]
        except KeyError:
            names = ", ".join(v.label for v in Verdict)
            raise ValueError(f"verdicts.{flag}: verdict must be one of {names}") from None
        if not isinstance(risk, int) or isinstance(risk, bool) or not 0 <= risk <= MAX_RISK:
            raise ValueError(f"verdicts.{flag}: risk must be an integer 0 to {MAX_RISK}")
        table[flag] = Outcome(verdict, risk)
    return table
