"""Closed-loop peak load with ``wrk`` (Debian package ``wrk``) and ``scan_load.lua``.

wrk keeps ``connections`` requests outstanding, so it finds the peak rate; its latencies exclude
the queueing an open-loop client would see (``benchmarks.open_loop`` measures that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

LOAD_SCRIPT = Path(__file__).with_name("scan_load.lua")


class WrkMissing(RuntimeError):
    pass


def run_wrk(url: str, env: Mapping[str, str], duration_s: int, connections: int) -> dict[str, Any]:
    """The load's figures: requests, seconds, errors, non_2xx, p50/p90/p99/p999/max ms and
    ``per_s``. ``env`` carries the load's settings (SCAN_CODES, SCAN_MEMBERS, SCAN_RATE)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkMissing("wrk is not installed: run 'sudo apt-get install wrk' (or 'make')")
    command = [wrk, "-t2", f"-c{connections}", f"-d{duration_s}s", "-s", str(LOAD_SCRIPT), url]
    env = {**os.environ, **env, "SCAN_CONNECTIONS": str(connections)}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, Any] = orjson.loads(line.removeprefix("WRK_JSON "))
    result["per_s"] = round(result["requests"] / result["seconds"])
    return result
