"""`syncswim audit` on a real two-database sync: a table by default, JSON lines on demand,
one record's history by side and across its link, filters, a notice when output is cut,
one-line errors for bad input, and a quiet end when the reader closes the pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncswim_lib.cli import main
from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def synced(dbs: TwoDbs, capsys: pytest.CaptureFixture[str]) -> str:
    """alice (app id 1) synced to shop; carol created on shop with id 1 too, synced to app;
    then alice edited on shop and synced back."""
    path = str(dbs.yaml_path)
    assert run(capsys, "setup", path)[0] == 0
    dbs.pg.execute("INSERT INTO customers (id, name) VALUES (1, 'alice')")
    dbs.pg.execute("SELECT setval('customers_id_seq', 100)")
    dbs.my_exec("INSERT INTO customers (id, name) VALUES (1, 'carol')")
    assert run(capsys, "sync", path, "--entity", "customers")[0] == 0
    (alice,) = [r for r in dbs.my_rows("customers") if r["name"] == "alice"]
    dbs.my_exec("UPDATE customers SET name = 'alice b' WHERE id = %s", (alice["id"],))
    assert run(capsys, "sync", path, "--entity", "customers")[0] == 0
    return path


def _json(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_a_table_by_default(synced: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", synced)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "SYNC.ENTITY", "SIDE", "OP"]
    assert any("app_shop.customers" in line and "applied" in line for line in lines[1:])


def test_one_record_by_side_and_across_its_link(
    dbs: TwoDbs, synced: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["audit", synced, "--entity", "customers", "--json"]
    # id 1 names alice on app and carol on shop: never mixed
    _, out, _ = run(capsys, *base, "--side", "app", "--key", "id=1")
    app_one = _json(out)
    assert app_one and {(e["side"], e["key"]["id"]) for e in app_one} == {("app", 1)}  # type: ignore[index]
    _, out, _ = run(capsys, *base, "--side", "shop", "--key", '{"id": 1}')
    shop_one = _json(out)
    assert shop_one and {e["side"] for e in shop_one} == {"shop"}
    assert all(e["op"] == "insert" for e in shop_one)  # carol, created on shop only
    # alice's whole history: her app row and, through the link, her shop row
    (alice,) = [r for r in dbs.my_rows("customers") if r["name"] == "alice b"]
    _, out, _ = run(capsys, *base, "--side", "shop", "--key", f"id={alice['id']}", "--record")
    history = _json(out)
    assert {(e["side"], e["op"]) for e in history} == {("app", "insert"), ("shop", "update")}
    ids = [e["id"] for e in history]
    assert ids == sorted(ids, reverse=True)  # newest first


def test_filters_and_the_cut_notice(synced: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", synced, "--status", "applied", "--json")
    assert code == 0 and out and all(e["status"] == "applied" for e in _json(out)), err
    code, out, _ = run(capsys, "audit", synced, "--limit", "1")
    assert code == 0 and out.splitlines()[-1] == "(the newest 1 shown; --limit N shows more)"
    assert len(out.splitlines()) == 3  # header, one entry, the notice
    code, out, err = run(capsys, "audit", synced, "--limit", "1", "--json")
    assert len(out.splitlines()) == 1 and "--limit N shows more" in err
    code, out, _ = run(capsys, "audit", synced, "--since", "2h")
    assert code == 0 and "applied" in out
    code, out, _ = run(capsys, "audit", synced, "--since", "2999-01-01")
    assert code == 0 and out.strip() == "no journal entries"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entity", "custmers"], "unknown entity 'custmers'"),
        (["--sync", "nope"], "unknown sync 'nope'"),
        (["--entity", "customers", "--key", "id=1"], "add --side app or shop"),
        (["--entity", "customers", "--side", "crm", "--key", "id=1"], "unknown side 'crm'"),
        (["--entity", "customers", "--side", "app", "--key", "id"], "column=value"),
        (["--entity", "customers", "--side", "app", "--key", "code=1"], "is id, not code"),
        (["--entity", "customers", "--side", "app", "--key", "{no"], "not valid JSON"),
        (["--entity", "customers", "--record"], "--record follows one record"),
        (["--status", "done"], "--status must be one of"),
        (["--since", "yesterday"], "--since must be"),
        (["--limit", "0"], "--limit must be a positive whole number"),
    ],
)
def test_bad_arguments_are_one_line(
    synced: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "audit", synced, *args)
    assert code == 2 and not out
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_a_closed_pipe_ends_quietly(
    dbs: TwoDbs, synced: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # far more output than a pipe buffers, so the writer meets the closed pipe
    dbs.pg.execute("INSERT INTO customers (name) SELECT 'c' || i FROM generate_series(1, 1500) i")
    assert run(capsys, "sync", synced, "--entity", "customers")[0] == 0
    reader = subprocess.Popen(
        [SYNCSWIM, "audit", synced, "--limit", "5000"],
        env={**os.environ, **dbs.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()
    reader.stdout.close()  # what `| head -1` does
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 0
    assert first.startswith(b"ID") and "Traceback" not in err and not err, err
