"""Live `validate` on polled tables: the modification column must exist (an error), should
lead an index and be kept current by the database (warnings otherwise)."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from syncswim_lib.config.cli_validate import run_validate
from tests.connectors.polling.harness import PolledPair

pytestmark = pytest.mark.integration


def validate(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_validate(str(path), out=out, err=err)
    return code, err.getvalue()


def test_a_well_kept_modification_column_gives_no_warning(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll",
        pg_poll="{column: updated_at, deleted: {keyset_every: 10m}}",
    )
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert "modification column" not in err and "keeps" not in err


def test_no_index_and_no_trigger_are_warnings(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    with sqlite3.connect(pair.sqlite_path) as conn:
        conn.execute("DROP INDEX customers_updated")
        conn.execute("DROP TRIGGER customers_touch")
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert (
        "warning: endpoints.legacy: no index starts with the modification column "
        "customers.updated_at" in err
    )
    assert "CREATE INDEX ON customers (updated_at)" in err
    assert "nothing in the database is seen to keep customers.updated_at current" in err


def test_a_missing_modification_column_is_an_error(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    pair.yaml_path.write_text(
        pair.yaml_path.read_text().replace("column: updated_at", "column: changed_at")
    )
    code, err = validate(pair.yaml_path)
    assert code == 2
    assert (
        "error: endpoints.legacy: the modification column customers.changed_at does not exist"
        in err
    )


def test_polled_postgres_without_a_trigger_warns(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll",
        pg_poll="{column: updated_at, deleted: {keyset_every: 10m}}",
    )
    pair.pg("DROP TRIGGER customers_touch ON customers")
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert "keep public.customers.updated_at current on UPDATE" in err
    assert "no index starts with" not in err


def test_a_soft_delete_column_our_deletes_cannot_set_is_an_error(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path, deleted="{column: amount}")  # NUMERIC(12,2)
    code, err = validate(pair.yaml_path)
    assert code == 2
    assert (
        "error: endpoints.legacy: the soft-delete column customers.amount is NUMERIC(12,2): "
        "the sync cannot mark a row deleted in it" in err
    )
