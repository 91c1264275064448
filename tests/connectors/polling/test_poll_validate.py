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


def _polled_pg(pg_dsn: str, tmp_path: Path) -> PolledPair:
    return PolledPair(
        pg_dsn,
        tmp_path,
        pg_capture=", capture: poll",
        pg_poll="{column: updated_at, deleted: {keyset_every: 10m}}",
    )


def test_a_nullable_modification_column_warns(pg_dsn: str, tmp_path: Path) -> None:
    pair = _polled_pg(pg_dsn, tmp_path)
    code, err = validate(pair.yaml_path)
    assert code == 0 and "is NULL" not in err, err
    pair.pg("ALTER TABLE customers ALTER updated_at DROP NOT NULL")
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert (
        "warning: endpoints.app: public.customers.updated_at may be NULL: a row where it is "
        "NULL is never polled" in err
    )


def test_a_timestamp_without_time_zone_in_a_database_not_on_utc_warns(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Writers stamp such a column in their session's zone, which the sync reads as UTC:
    behind UTC, new rows look older than the cursor and are never polled."""
    pair = _polled_pg(pg_dsn, tmp_path)
    database = pg_dsn.rsplit("/", 1)[1]
    pair.pg("ALTER TABLE customers ALTER updated_at TYPE timestamp")
    pair.pg(f"ALTER DATABASE \"{database}\" SET TimeZone = 'UTC'")
    code, err = validate(pair.yaml_path)
    assert code == 0 and "time zone" not in err, err
    pair.pg(f"ALTER DATABASE \"{database}\" SET TimeZone = 'America/New_York'")
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert (
        "warning: endpoints.app: public.customers.updated_at is a timestamp without time "
        "zone and the database's TimeZone is America/New_York" in err
    )
    assert "ALTER TABLE public.customers ALTER updated_at TYPE timestamptz" in err


def test_an_index_that_does_not_start_with_the_column_warns(pg_dsn: str, tmp_path: Path) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    with sqlite3.connect(pair.sqlite_path) as conn:
        conn.execute("DROP INDEX customers_updated")
        conn.execute("CREATE INDEX customers_name_updated ON customers (name, updated_at)")
    code, err = validate(pair.yaml_path)
    assert code == 0, err
    assert "no index starts with the modification column customers.updated_at" in err


def test_a_modification_column_that_is_no_time_or_version_is_an_error(
    pg_dsn: str, tmp_path: Path
) -> None:
    pair = PolledPair(pg_dsn, tmp_path)
    pair.yaml_path.write_text(
        pair.yaml_path.read_text().replace("column: updated_at", "column: name")
    )
    code, err = validate(pair.yaml_path)
    assert code == 2
    assert "error: endpoints.legacy: the modification column customers.name is TEXT" in err


def test_mariadb_on_update_default_keeps_the_column_and_its_absence_warns(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> None:
    from tests.connectors.polling.harness import PolledMariaDB

    pair = PolledMariaDB(pg_dsn, mysql_dsn, tmp_path, "{column: deleted_at}")
    try:
        code, err = validate(pair.yaml_path)
        assert code == 0, err
        assert "current on UPDATE" not in err and "no index starts" not in err
        pair.my(
            "ALTER TABLE customers MODIFY updated_at datetime(6) NOT NULL "
            "DEFAULT current_timestamp(6)"
        )
        code, err = validate(pair.yaml_path)
        assert code == 0, err
        assert "nothing in the database is seen to keep customers.updated_at current" in err
    finally:
        pair.close()


def test_a_mariadb_datetime_on_a_server_not_on_utc_warns(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path
) -> None:
    """ON UPDATE current_timestamp stamps a datetime in the writer's session zone (the
    server's time_zone), which the sync reads as UTC."""
    from tests.connectors.polling.harness import PolledMariaDB

    pair = PolledMariaDB(pg_dsn, mysql_dsn, tmp_path, "{column: deleted_at}")
    try:
        with pair._my.cursor() as cur:
            cur.execute("SELECT @@global.time_zone")
            (before,) = cur.fetchone()  # type: ignore[misc]
        try:
            pair.my("SET GLOBAL time_zone = '+00:00'")
            code, err = validate(pair.yaml_path)
            assert code == 0 and "time zone" not in err, err
            pair.my("SET GLOBAL time_zone = '-05:00'")
            code, err = validate(pair.yaml_path)
            assert code == 0, err
            assert (
                "warning: endpoints.shop: customers.updated_at is a timestamp without time "
                "zone and the server's time_zone is -05:00" in err
            )
        finally:
            pair.my("SET GLOBAL time_zone = %s", (before,))
    finally:
        pair.close()
