"""What every benchmark report carries (git commit, machine) and where it is saved."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).with_name("results")


def provenance() -> dict[str, Any]:
    """The commit and machine a figure was measured on."""
    return {
        "git_commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def print_or_publish(result: dict[str, Any], name: str, *, save: bool, quick: bool) -> None:
    """Printed; with ``save``, also saved as ``<name>-<stamp>[-quick]``."""
    if save:
        suffix = "-quick" if quick else ""
        publish(result, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}")
    else:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


def publish(result: dict[str, Any], name: str) -> None:
    """``result`` printed as JSON and saved as ``benchmarks/results/<name>.json``."""
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_bytes(text + b"\n")
    sys.stdout.write(text.decode() + "\n")


def _git_commit() -> str:
    try:
        command = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
