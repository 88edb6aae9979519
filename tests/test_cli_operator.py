"""What an operator meets at the command line: the version, help on every command and option,
one-line errors with the usual exit statuses, no secret in any of it; and, against real servers,
progress bars on a terminal only, a reader that hangs up early (``| head``) ending the command
quietly, and the summary of ``alerts detect``."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import orjson
import pytest

from codes.batches import Batch, BatchKind, BatchStatus
from ingest.cli import build_parser, main
from ingest.cli.bench import suite_parser
from ingest.config import SECRET_SETTINGS, Settings, hide_passwords
from ingest.ops import demo
from ingest.warehouse.client import connect

PASSWORD = "hunter2-not-for-logs"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SCANWARD_REDIS_URL", "SCANWARD_CLICKHOUSE_URL", "SCANWARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCANWARD_KEYRING_SECRET", "cli secret")
    monkeypatch.setenv("SCANWARD_DATA_DIR", str(tmp_path))
    return tmp_path


def test_version_comes_from_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"scanward {metadata.version('scanward')}\n"


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command tree, with its command line."""
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"command {c.dest}" for c in action._choices_actions if not c.help]
        elif not action.help:
            missing.append(action.option_strings[0] if action.option_strings else action.dest)
    return missing


def test_every_command_and_option_has_help() -> None:
    parsers = [*_parsers(build_parser()), ("scanward bench", suite_parser())]
    undocumented = {prog: m for prog, parser in parsers if (m := _undocumented(parser))}
    assert undocumented == {}


def test_help_shows_defaults_and_no_docstring_markup() -> None:
    codes_help = dict(_parsers(build_parser()))["scanward batch codes"].format_help()
    assert "(default: txt)" in codes_help
    assert "(default: 0)" in codes_help
    assert "(default: None)" not in codes_help
    bench_help = suite_parser().format_help()
    assert "``" not in bench_help
    assert "(default: " in bench_help


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCANWARD_REDIS_URL", "redis://127.0.0.1:99999"),
        ("SCANWARD_REDIS_URL", "redis://h:abc"),
        ("SCANWARD_REDIS_URL", "redis://:6379"),
        ("SCANWARD_CLICKHOUSE_URL", "clickhouse://127.0.0.1:70000/default"),
        ("SCANWARD_ADMIN_TOKEN", PASSWORD[:10]),
        ("SCANWARD_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:99999"),
        ("SCANWARD_REDIS_URL", f"redis://user:{PASSWORD}@127.0.0.1:6379,redis://:{PASSWORD}@"),
        ("SCANWARD_CLICKHOUSE_URL", f"clickhouse://default:{PASSWORD}@127.0.0.1:x/d"),
        (
            "SCANWARD_CLICKHOUSE_URL",
            f"clickhouse://u:{PASSWORD}@a:9000/one;clickhouse://u:{PASSWORD}@b:9000/two",
        ),
        ("SCANWARD_RESOLVER_URL", f"ftp://u:{PASSWORD}@resolver.example"),
    ],
)
def test_a_rejected_setting_is_one_line_without_its_secret(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    """Malformed server URLs (a bad port, no host) are refused as settings are read, as every
    setting is: status 2, one line naming the variable, no secret of it."""
    monkeypatch.setenv(variable, value)
    assert main(["keys", "list"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"scanward: {variable}")
    assert error.count("\n") == 1
    assert PASSWORD[:10] not in error


def test_every_setting_named_like_a_secret_is_kept_secret() -> None:
    names = {setting.name for setting in dataclasses.fields(Settings)}
    secret_like = {n for n in names if any(w in n for w in ("token", "secret", "password"))}
    assert secret_like <= SECRET_SETTINGS


def test_hide_passwords_masks_every_url_of_a_list() -> None:
    text = (
        f"redis://:{PASSWORD}@a:1,redis://user:{PASSWORD}@b:2/0;"
        f"clickhouse://u:p@ss{PASSWORD}@c:9000/db redis://a:6379 https://x.example/p?q=1"
    )
    hidden = hide_passwords(text)
    assert PASSWORD not in hidden
    assert hidden == (
        "redis://:***@a:1,redis://user:***@b:2/0;"
        "clickhouse://u:***@c:9000/db redis://a:6379 https://x.example/p?q=1"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:pa/{PASSWORD}@h:6379", "redis://:***@h:6379"),
        (f"redis://u:a?b#{PASSWORD}@h:6379/0", "redis://u:***@h:6379/0"),
        (f"redis://h:6379/0?password={PASSWORD}&db=1", "redis://h:6379/0?password=***&db=1"),
    ],
)
def test_hide_passwords_masks_passwords_that_break_the_url(url: str, shown: str) -> None:
    assert hide_passwords(url) == shown


def test_the_demo_names_the_admin_token_and_never_prints_it(tmp_path: Path) -> None:
    token = f"{PASSWORD}-admin-token"
    settings = Settings(data_dir=tmp_path, admin_token=token, keyring_secret=PASSWORD)
    batch = Batch(
        "B1", demo.DEMO_SKU, demo.DEMO_GTIN, BatchKind.UNIT, "", 0, 1, 1000, 0, BatchStatus.ACTIVE
    )
    shown = demo.instructions(settings, "http://127.0.0.1:8080", batch)
    assert PASSWORD not in shown
    assert "$SCANWARD_ADMIN_TOKEN" in shown
    assert '"Authorization: Bearer $SCANWARD_ADMIN_TOKEN"' in shown


@pytest.mark.parametrize("compare", ["missing.json", "not-json.json"])
def test_bench_compare_with_a_bad_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], compare: str
) -> None:
    (tmp_path / "not-json.json").write_text("suite results?")
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--compare", str(tmp_path / compare)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert f"argument --compare: {tmp_path / compare}" in error


def test_interrupted_commands_exit_130_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C while a command runs: status 130 and nothing on stderr."""
    script = "import ingest.cli, signal, os; import ingest.cli.keys as k\n" + (
        "k.keys_command = lambda args: os.kill(os.getpid(), signal.SIGINT)\n"
        "import sys; sys.exit(ingest.cli.main(['keys', 'list']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SCANWARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (done.returncode, done.stderr) == (130, "")


# --- against real servers: progress, closed pipes, the alerts' summary ---------------------


class Terminal(io.StringIO):
    """Standard error as a terminal shows it (what tqdm writes is kept to be read back)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def batch_id(
    data_dir: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """A batch of 50,000 codes, ordered with the CLI."""
    monkeypatch.setenv("SCANWARD_REDIS_URL", redis_url)
    assert main(["keys", "init"]) == 0
    capsys.readouterr()
    order = ["batch", "create", "--sku", "S", "--gtin", "4006381333931", "--quantity", "50000"]
    assert main(order) == 0
    created = orjson.loads(capsys.readouterr().out)
    return str(created["batch_id"])


@pytest.fixture
def scans_database(database: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated database with 20,000 scans of today, four of two codes scanned as clones."""
    _insert_scans(database, 20_000, cloned=4)
    monkeypatch.setenv("SCANWARD_CLICKHOUSE_URL", database)
    return database


def _insert_scans(url: str, count: int, cloned: int) -> None:
    """``count`` scans of today, of two codes; the first ``cloned`` flagged as clones."""
    client = connect(url)
    try:
        client.execute(
            "INSERT INTO scans (date, time, time_ms, code, flag_list) "
            "SELECT today(), now(), number, concat('C', toString(modulo(number, 2))), "
            "if(number < %(cloned)s, 'cloned', '') FROM numbers(%(count)s)",
            {"count": count, "cloned": cloned},
        )
    finally:
        client.disconnect()


def _head(command: list[str]) -> subprocess.CompletedProcess[str]:
    """``scanward COMMAND | head -1``: the reader takes one line and closes the pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    error = process.stderr.read().decode()
    process.wait(timeout=60)
    assert first
    return subprocess.CompletedProcess(command, process.returncode, "", error)


@pytest.mark.redis
def test_batch_codes_into_a_closed_pipe_ends_quietly(batch_id: str) -> None:
    done = _head(["batch", "codes", batch_id, "--format", "url"])
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.clickhouse
def test_export_into_a_closed_pipe_ends_quietly(scans_database: str) -> None:
    done = _head(["export", "scans", "--since", "2000-01-01"])
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.redis
def test_batch_codes_show_progress_on_a_terminal_only(
    batch_id: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = data_dir / "codes.txt"
    assert main(["batch", "codes", batch_id, "--output", str(output)]) == 0
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["batch", "codes", batch_id, "--output", str(output)]) == 0
    shown = terminal.getvalue()
    assert "codes: 100%" in shown
    assert output.read_bytes().count(b"\n") == 50_000


@pytest.mark.clickhouse
def test_export_shows_progress_on_a_terminal_only(
    scans_database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["export", "scans", "--since", "2000-01-01"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "exported 20000 scans\n"
    assert captured.out.count("\n") == 20_001  # the header and the rows, nothing else
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["export", "scans", "--since", "2000-01-01"]) == 0
    assert capsys.readouterr().out == captured.out
    assert "scans: " in terminal.getvalue()
    assert terminal.getvalue().endswith("exported 20000 scans\n")


@pytest.mark.clickhouse
def test_alerts_detect_prints_a_summary(
    database: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SCANWARD_CLICKHOUSE_URL", database)
    assert main(["alerts", "detect"]) == 0
    assert capsys.readouterr().out == "no alerts in the scans of the last 86400 s\n"
    _insert_scans(database, 4, cloned=4)
    assert main(["alerts", "detect"]) == 0
    assert capsys.readouterr().out == (
        "2 alert(s) in the scans of the last 86400 s: 2 cloned_code\n"
    )
