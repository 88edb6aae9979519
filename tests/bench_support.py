"""Running a benchmark's quick variant from a test, as a user would run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_report(module: str, limit_s: float) -> dict[str, Any]:
    """The JSON that ``python -m <module> --quick --no-save`` prints (wrk needed: skipped
    without it)."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (make installs it)")
    command = [sys.executable, "-m", module, "--quick", "--no-save"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, timeout=limit_s, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = orjson.loads(run.stdout)
    return result


def assert_faulted_round(kill: dict[str, Any], drain: dict[str, Any]) -> None:
    """A round of a fault benchmark measured something: scans answered just before the fault
    and after the recovery, prizes drawn (so budgets could be overspent), and the sink drained
    every event and draw afterwards."""
    assert kill["answered_in_last_s_before_kill"] > 0, kill
    assert kill["answered_after_restart"] > 0, kill
    assert kill["prizes_answered"] > 0, kill
    assert drain["unsunk_events"] == 0, drain
    assert drain["unsunk_draws"] == 0, drain
