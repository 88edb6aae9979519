"""``scanward bench``: the load-test suite of ``benchmarks``, imported only when the command
runs (no API worker, sink or alerts process loads it), with its own options and help."""

from __future__ import annotations

import argparse
import signal
from types import ModuleType

from ingest.cli.common import CommandError, Parser, Subcommands

_DESCRIPTION = (
    "Load-test a private stack it starts (or a running one, with --url) and write a report: "
    "codes signed and verified per core, the scan path's throughput and latency for each "
    "worker count, bulk ingest, the sink's rows/s and Redis memory per code, each beside a "
    "ceiling measured in the same run. The report goes to benchmarks/results/, with charts; "
    "--compare prints the ratios to an earlier run. Ctrl-C stops what it started."
)


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        add_help=False,  # --help goes to the suite's own parser
        help="load-test a private stack (or --url) and write a report of its figures",
    )
    bench.set_defaults(run=bench_command, passes_options_on=True)


def suite_parser() -> argparse.ArgumentParser:
    """The suite's options and help."""
    parser = Parser(prog="scanward bench", description=_DESCRIPTION)
    _suite().add_arguments(parser)
    return parser


def bench_command(args: argparse.Namespace) -> None:
    """The suite's options are parsed by the suite; SIGTERM stops it as Ctrl-C does, stopping
    what it started."""
    suite = _suite()
    options = suite_parser().parse_args(args.passed_on)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        suite.bench(options)
    except suite.BenchError as error:
        raise CommandError(str(error)) from None


def _suite() -> ModuleType:
    """The suite; without the bench extra (the report's charts), one line."""
    try:
        from benchmarks import suite
    except ImportError as error:  # installed without the bench extra
        raise CommandError(
            f"scanward bench needs the bench extra ({error.name} is missing)"
        ) from None
    return suite


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
