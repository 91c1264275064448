"""No command prints a password: malformed DSNs and state store URLs get one line naming
the key, through the real `syncswim` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syncswim_lib.cli import main
from syncswim_lib.envelope import Change, Op, WatermarkPosition
from syncswim_lib.redact import passwords_in, redact
from syncswim_lib.state import open_store
from syncswim_lib.state.base import BatchRecord, EntryUpdate

PASSWORD = "hunter2pw"

YAML = """\
version: 1
state: {{env: SW_STATE}}
endpoints:
  app_db: {{kind: postgres, dsn: {{env: SW_PG}}}}
  shop_db: {{kind: mysql, dsn: {{env: SW_MY}}}}
syncs:
  s:
    between: [{first}, {second}]
    entities:
      customers:
        app_db: {{table: public.customers, key: [id]}}
        shop_db: {{table: customers, key: [id]}}
        mode: {{system_of_record: app_db, external_id: {{shop_db: app_id}}}}
        fields: {{name: name}}
"""

BAD_PG = {
    "percent": f"postgresql://app:{PASSWORD}%zz@127.0.0.1:5432/app",
    "bracket": f"postgresql://app:{PASSWORD}@[127.0.0.1:5432/app",
}
BAD_MY = {
    "bracket": f"mysql://root:{PASSWORD}@[127.0.0.1:3306/shop",
    "port": f"mysql://root:{PASSWORD}@127.0.0.1:99999/shop",
    "scheme": f"mysq://root:{PASSWORD}@127.0.0.1:3306/shop",
}
# connected to nothing: every case fails on the DSN it checks before any connection
UNUSED_PG = "postgresql://app:other@127.0.0.1:1/app"
UNUSED_MY = "mysql://root:other@127.0.0.1:1/shop"


def run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    *,
    pg: str = UNUSED_PG,
    my: str = UNUSED_MY,
    state: str | None = None,
    mysql_first: bool = False,
) -> tuple[int, str]:
    path = tmp_path / "sync.yaml"
    first, second = ("shop_db", "app_db") if mysql_first else ("app_db", "shop_db")
    path.write_text(YAML.format(first=first, second=second))
    monkeypatch.setenv("SW_STATE", state or f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("SW_PG", pg)
    monkeypatch.setenv("SW_MY", my)
    code = main([args[0], str(path), *args[1:]])
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_one_clean_line(code: int, output: str, key: str) -> None:
    assert code != 0, output
    assert PASSWORD not in output, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and all(key in line for line in lines), output


@pytest.mark.parametrize("shape", sorted(BAD_PG))
@pytest.mark.parametrize("command", ["sync", "setup"])
def test_a_malformed_postgres_dsn(
    shape: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run(tmp_path, monkeypatch, capsys, [command], pg=BAD_PG[shape])
    assert_one_clean_line(code, output, "endpoints.app_db.dsn: not a valid PostgreSQL DSN")


@pytest.mark.parametrize("shape", sorted(BAD_PG))
@pytest.mark.parametrize("command", ["sync", "audit"])
def test_a_malformed_postgres_state_url(
    shape: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run(tmp_path, monkeypatch, capsys, [command], state=BAD_PG[shape])
    assert_one_clean_line(code, output, "state: not a valid PostgreSQL")


@pytest.mark.parametrize("shape", sorted(BAD_MY))
@pytest.mark.parametrize("command", ["sync", "setup"])
def test_a_malformed_mysql_dsn(
    shape: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = run(tmp_path, monkeypatch, capsys, [command], my=BAD_MY[shape], mysql_first=True)
    assert_one_clean_line(code, output, "endpoints.shop_db.dsn")


def test_a_refused_connection_names_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A well-formed DSN to a closed port: a retriable error, still without the password."""
    pg = f"postgresql://app:{PASSWORD}@127.0.0.1:1/app?connect_timeout=2"
    code, output = run(tmp_path, monkeypatch, capsys, ["sync"], pg=pg)
    assert code != 0 and PASSWORD not in output and "cannot connect" in output, output


def test_redact_patterns() -> None:
    assert redact("at postgresql://u:p%40ss@h/db now") == "at postgresql://u:***@h/db now"
    assert redact("host=h password='a b' user=u") == "host=h password=*** user=u"
    assert redact("password=x1 port=5") == "password=*** port=5"
    # an unencoded @ in the password: everything up to the last one goes
    assert redact('"mysql://r:a@b@h/db"') == '"mysql://r:***@h/db"'
    # a token the driver quotes alone is found through the DSN it came from
    dsn = "postgresql://u:s3cr%zz@h/db"
    assert redact('invalid token: "s3cr%zz"', dsn) == 'invalid token: "***"'
    assert "p@ss" in passwords_in("postgresql://u:p%40ss@h/db")
    # no password, nothing removed
    assert redact("postgresql://u@h:5432/db", "postgresql://u@h:5432/db") == (
        "postgresql://u@h:5432/db"
    )


# through the installed `syncswim` command, each in a process of its own: what a person
# sees, stdout and stderr together, whatever the command prints on its way out
SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))
# the commands that read an endpoint's DSN; `retry` only once there is something to retry
ENDPOINT_COMMANDS = ["sync", "setup", "verify", "retry", "doctor"]
STATE_COMMANDS = ["sync", "setup", "audit", "verify", "retry"]  # doctor opens no store


def _a_failed_change(state: str) -> None:
    """A failed journal entry, so that `retry` goes on to run the sync (and to connect)."""
    store = open_store(state)
    try:
        change = Change(
            Op.INSERT,
            "public.customers",
            {"id": 1},
            {"id": 1, "name": "x"},
            None,
            WatermarkPosition("p1"),
            None,
            datetime.now(UTC),
        )
        store.append_changes("s", "app_db", [("customers", change)], None)
        (entry,) = store.pending("s", "customers")
        store.set_batch([entry.id], "b1")
        store.record(
            BatchRecord(
                "s",
                "customers",
                entries=[EntryUpdate(entry.id, "failed", {"error": "refused"})],
                finished_batch_ids=["b1"],
            )
        )
    finally:
        store.close()


def cli(
    tmp_path: Path,
    command: str,
    *,
    pg: str = UNUSED_PG,
    my: str = UNUSED_MY,
    state: str | None = None,
    mysql_first: bool = False,
) -> tuple[int, str]:
    path = tmp_path / "sync.yaml"
    first, second = ("shop_db", "app_db") if mysql_first else ("app_db", "shop_db")
    path.write_text(YAML.format(first=first, second=second))
    store = f"sqlite:///{tmp_path / 'state.db'}"
    if command == "retry" and state is None:
        _a_failed_change(store)
    env = {**os.environ, "SW_STATE": state or store, "SW_PG": pg, "SW_MY": my}
    done = subprocess.run(
        [SYNCSWIM, command, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def assert_no_secret(code: int, output: str, key: str) -> None:
    assert code != 0, output
    assert PASSWORD not in output, output
    assert "Traceback" not in output, output
    assert key in output, output  # the error names the key path it is about


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(BAD_PG))
@pytest.mark.parametrize("command", ENDPOINT_COMMANDS)
def test_cli_a_malformed_postgres_dsn(shape: str, command: str, tmp_path: Path) -> None:
    code, output = cli(tmp_path, command, pg=BAD_PG[shape])
    assert_no_secret(code, output, "endpoints.app_db.dsn: not a valid PostgreSQL DSN")


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(BAD_PG))
@pytest.mark.parametrize("command", STATE_COMMANDS)
def test_cli_a_malformed_postgres_state_url(shape: str, command: str, tmp_path: Path) -> None:
    code, output = cli(tmp_path, command, state=BAD_PG[shape])
    assert_no_secret(code, output, "state: not a valid PostgreSQL")


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(BAD_MY))
@pytest.mark.parametrize("command", ENDPOINT_COMMANDS)
def test_cli_a_malformed_mysql_dsn(shape: str, command: str, tmp_path: Path) -> None:
    code, output = cli(tmp_path, command, my=BAD_MY[shape], mysql_first=True)
    assert_no_secret(code, output, "endpoints.shop_db.dsn")
