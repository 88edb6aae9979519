"""The import rules that `lint-imports` cannot see: what a process loads at run time, and the
package as pip builds it, with no extras, serving for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from ingest.ops.local_services import free_port
from tests.conftest import KEYRING_SECRET

ROOT = Path(__file__).resolve().parent.parent
_NOT_SOURCE = (".venv", "var", ".git", "build", "*.egg-info", "results", "__pycache__", ".*_cache")
_PIP_INSTALL = (sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation")


def _bench_extra_modules() -> list[str]:
    """The top-level modules of the ``bench`` extra's packages (tqdm, matplotlib)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [
        requirement.split(">")[0].split("=")[0].split("[")[0].strip()
        for requirement in project["optional-dependencies"]["bench"]
    ]
    assert names, "the bench extra lists no packages"
    return names


def test_the_cli_loads_no_benchmark_module() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ingest.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    banned = ("benchmarks", *_bench_extra_modules())
    assert [m for m in loaded if m.split(".")[0] in banned] == []


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install .`` of this tree, without its extras, into a folder of its own; the
    dependencies come from the test's environment, the bench extra's are made unimportable."""
    target = tmp_path_factory.mktemp("installed")
    source = target / "source"  # a copy: pip builds in the tree it is given
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    subprocess.run(
        [*_PIP_INSTALL, "--target", str(target / "site"), str(source)],
        check=True,
        capture_output=True,
    )
    blocked = _bench_extra_modules()
    (target / "run.py").write_text(
        textwrap.dedent(f"""
        import importlib.abc, sys
        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, NotInstalled())
        import ingest.cli
        assert ingest.cli.__file__.startswith({str(target / "site")!r}), ingest.cli.__file__
        sys.exit(ingest.cli.main(sys.argv[1:]))
        """)
    )
    return target


def _run_installed(installed: Path, *argv: str, **options: object) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(installed / "site")}
    return subprocess.Popen(
        [sys.executable, str(installed / "run.py"), *argv],
        cwd=installed,  # not this tree: the installed copy is what runs
        env={**environment, **options.get("env", {})},  # type: ignore[dict-item]
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_installed_without_extras_has_help(installed: Path) -> None:
    process = _run_installed(installed, "--help")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "serve" in out
    assert "bench" in out
    process = _run_installed(installed, "bench", "--quick")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "needs the bench extra" in err


@pytest.mark.redis
def test_installed_without_extras_serves(
    installed: Path, redis_url: str, keyring_path: Path, tmp_path: Path
) -> None:
    port = free_port()
    process = _run_installed(
        installed,
        "serve",
        env={
            "SCANWARD_DATA_DIR": str(tmp_path),
            "SCANWARD_REDIS_URL": redis_url,
            "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
            "SCANWARD_KEYRING_PATH": str(keyring_path),
            "SCANWARD_PORT": str(port),
        },
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the installed server never answered"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_installed_package_carries_its_scripts_and_migrations(installed: Path) -> None:
    def data_files(root: Path) -> set[str]:
        return {
            str(path.relative_to(root))
            for pattern in ("*.lua", "*.sql")
            for package in ("codes", "fraud", "rewards", "ingest")
            for path in (root / package).rglob(pattern)
        }

    assert data_files(installed / "site") == data_files(ROOT)
