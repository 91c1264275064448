"""The command line on a real two-database sync: validate, setup, sync, audit, teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))


def cli(dbs: TwoDbs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCSWIM, *args],
        env={**os.environ, **dbs.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _slots(dbs: TwoDbs) -> list[str]:
    rows = dbs.pg.execute(
        "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
    ).fetchall()
    return [r["slot_name"] for r in rows]


def test_setup_sync_audit_teardown(dbs: TwoDbs) -> None:
    path = str(dbs.yaml_path)
    ok = cli(dbs, "validate", path)
    assert ok.returncode == 0, ok.stderr
    assert cli(dbs, "setup", path).returncode == 0
    assert _slots(dbs) == ["syncswim_app_shop"]
    pubs = dbs.pg.execute("SELECT pubname FROM pg_publication").fetchall()
    assert [p["pubname"] for p in pubs] == ["syncswim_app_shop"]

    dbs.pg.execute("INSERT INTO customers (id, name) VALUES (7, 'audited')")
    done = cli(dbs, "sync", path, "--entity", "customers")
    assert done.returncode == 0, done.stderr
    assert "shop +1" in done.stdout

    audit = cli(
        dbs, "audit", path, "--entity", "customers", "--side", "app", "--key", "id=7", "--json"
    )
    assert audit.returncode == 0, audit.stderr
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["side"], e["op"], e["status"]) for e in entries] == [("app", "insert", "applied")]
    assert entries[0]["detail"]["writes"][0]["values"]["name"] == "audited"

    assert cli(dbs, "teardown", path).returncode == 0
    assert _slots(dbs) == []
    assert dbs.pg.execute("SELECT count(*) AS n FROM pg_publication").fetchone()["n"] == 0


def test_validate_names_the_missing_column(dbs: TwoDbs) -> None:
    dbs.yaml_path.write_text(dbs.yaml_path.read_text().replace("notes: notes", "notes: remarks"))
    bad = cli(dbs, "validate", str(dbs.yaml_path))
    assert bad.returncode != 0
    assert "syncs.app_shop.entities.customers.fields" in bad.stderr
    assert "remarks" in bad.stderr
