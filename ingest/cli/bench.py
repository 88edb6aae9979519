"""``scanward bench``: the load-test suite of ``benchmarks``, imported only when the command
runs (no API worker, sink or alerts process loads it), with its own options and help."""

from __future__ import annotations

import argparse
import signal

from ingest.cli.common import CommandError, Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        add_help=False,  # --help goes to the suite's own parser
        help="load-test a private stack (or --url) and write a report of its figures",
    )
    bench.set_defaults(run=bench_command, passes_options_on=True)


def bench_command(args: argparse.Namespace) -> None:
    """The suite's options are parsed by the suite; SIGTERM stops it as Ctrl-C does, stopping
    what it started."""
    try:
        from benchmarks import suite
    except ImportError as error:  # installed without the bench extra
        raise CommandError(
            f"scanward bench needs the bench extra ({error.name} is missing)"
        ) from None
    parser = argparse.ArgumentParser(prog="scanward bench", description=suite.__doc__)
    suite.add_arguments(parser)
    options = parser.parse_args(args.passed_on)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        suite.bench(options)
    except suite.BenchError as error:
        raise CommandError(str(error)) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
