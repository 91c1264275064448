"""The `syncswim` command, run as users run it: the installed script in a subprocess."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from syncswim_lib.cli import _missing

SYNCSWIM = Path(sys.executable).parent / "syncswim"
SUBCOMMANDS = ("sandbox", "validate", "setup", "teardown", "sync", "demo", "audit")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYNCSWIM), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_every_subcommand() -> None:
    out = cli("--help")
    assert out.returncode == 0, out
    for name in SUBCOMMANDS:
        assert name in out.stdout
    sandbox = cli("sandbox", "--help")
    assert sandbox.returncode == 0 and all(a in sandbox.stdout for a in ("up", "down", "status"))


def test_help_imports_nothing_heavy() -> None:
    """Subcommands import their modules when they run, so `--help` answers at once."""
    probe = (
        "import sys\n"
        "from syncswim_lib.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'dagster', 'psycopg', 'pymysql', 'pyarrow', 'pandas', 'pydantic'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "             or m.startswith(('syncswim_lib.sandbox', 'syncswim_lib.config',\n"
        "                              'syncswim_lib.pipeline'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("syncswim 0."), out


@pytest.mark.parametrize(
    "args", [(), ("frobnicate",), ("sandbox",), ("sandbox", "explode"), ("sync",)]
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    out = cli(*args)
    assert out.returncode == 2, out
    assert "usage: syncswim" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    out = cli("validate", str(missing), "--no-live")
    assert "Traceback" not in out.stderr
    if importlib.util.find_spec("syncswim_lib.config.cli_validate") is None:
        assert out.returncode == 1, out
        assert "not available in this build: syncswim_lib.config.cli_validate" in out.stderr
    else:
        assert out.returncode != 0, out
        assert f"{missing}: file not found" in out.stderr, out


def test_missing_parts_are_told_apart_from_broken_dependencies() -> None:
    absent = ModuleNotFoundError("no", name="syncswim_lib.pipeline.admin")
    assert _missing(absent) == "syncswim_lib.pipeline.admin"
    no_name = ImportError("cannot import name 'audit'", name="syncswim_lib.pipeline.admin")
    assert _missing(no_name) == "syncswim_lib.pipeline.admin (cannot import name 'audit')"
    assert _missing(ModuleNotFoundError("no", name="psycopg")) is None


def test_a_build_without_a_part_says_so() -> None:
    # sys.modules[name] = None makes `import name` fail as if the module were not shipped
    probe = (
        "import sys\n"
        "sys.modules['syncswim_lib.pipeline.audit_cmd'] = None\n"
        "from syncswim_lib.cli import main\n"
        "sys.exit(main(['audit', 'x.yaml', '--entity', 'customers']))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 1, out
    assert (
        out.stderr.strip()
        == "syncswim: not available in this build: syncswim_lib.pipeline.audit_cmd"
    )
