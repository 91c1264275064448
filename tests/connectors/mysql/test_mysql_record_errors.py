"""Which refusals are one record's on MariaDB: each row the server refuses for its own
values (too long, out of range, an invalid string, invalid JSON, a missing parent, a
duplicate, NULL) is parked with the server's code while the others are written; a missing
privilege is the statement's and fails the batch instead of parking every row."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from syncswim_lib.connectors.base import ApplyBatch
from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.errors import FatalError

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

DDL = (
    "CREATE TABLE parents (id int PRIMARY KEY) ENGINE=InnoDB",
    "INSERT INTO parents VALUES (1)",
    """CREATE TABLE items (
      id int PRIMARY KEY,
      code varchar(5) NOT NULL UNIQUE,
      small tinyint NULL,
      legacy varchar(20) CHARACTER SET utf8mb3 NULL,
      doc json NULL,
      parent int NULL,
      CONSTRAINT items_parent FOREIGN KEY (parent) REFERENCES parents (id)
    ) ENGINE=InnoDB""",
)
COLUMNS = {
    "__ref": pa.string(),
    "id": pa.int64(),
    "code": pa.string(),
    "small": pa.int64(),
    "legacy": pa.string(),
    "doc": pa.string(),
    "parent": pa.int64(),
}
GOOD = {"code": "ok", "small": 1, "legacy": "plain", "doc": '{"a": 1}', "parent": 1}
# ref -> (the bad values, what the parked error says: the server's code, or the refusal
# of the connector's own check when it catches the value before the server would)
POISONS: dict[str, tuple[dict[str, Any], str]] = {
    "too_long": ({"code": "TOOLONG"}, "longer than 5 characters"),
    "out_of_range": ({"small": 300}, "1264"),
    "bad_string": ({"legacy": "emoji \U0001f600"}, "1366"),
    "bad_json": ({"doc": "{not json"}, "not valid JSON"),
    "no_parent": ({"parent": 99}, "1452"),
    "duplicate": ({"code": "c7"}, "1062"),
    "null": ({"code": None}, "1048"),
}


def batch(batch_id: str, inserts: list[dict[str, Any]]) -> ApplyBatch:
    schema = pa.schema(list(COLUMNS.items()))
    return ApplyBatch(
        batch_id=batch_id,
        origin="s1",
        table="items",
        key_columns=("id",),
        inserts=pa.Table.from_pylist(inserts, schema=schema),
        updates=pa.Table.from_pylist(
            [], schema=pa.schema([("__ref", pa.string()), ("id", pa.int64())])
        ),
        deletes=pa.Table.from_pylist(
            [], schema=pa.schema([("__ref", pa.string()), ("id", pa.int64())])
        ),
    )


def test_each_refused_row_is_parked_with_its_code(connector: MySQLConnector, db: Db) -> None:
    db.run(*DDL)
    connector.setup("s1", ["items"])
    rows = [{"__ref": f"r{i}", "id": i, **GOOD, "code": f"c{i}"} for i in range(1, 1001)]
    for n, (ref, (bad, _)) in enumerate(POISONS.items()):
        rows.insert(100 * n + 50, {"__ref": ref, "id": 5000 + n, **GOOD, "code": f"p{n}", **bad})
    result = connector.apply(batch("b1", rows))
    assert result.inserted == 1000
    assert set(result.rejected) == set(POISONS)
    for ref, (_, code) in POISONS.items():
        assert code in result.rejected[ref], (ref, result.rejected[ref])
    assert db.rows("SELECT count(*) FROM items") == [(1000,)]


def test_a_missing_privilege_fails_the_batch(
    connector: MySQLConnector, db: Db, mysql_dsn: str, db_name: str
) -> None:
    db.run(*DDL)
    connector.setup("s1", ["items"])
    user = f"ro_{uuid.uuid4().hex[:8]}"
    db.run(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-ro-1'",
        f"GRANT SELECT ON `{db_name}`.* TO '{user}'@'%'",
        f"GRANT ALL ON `{db_name}`.`_syncswim_applied` TO '{user}'@'%'",
    )
    parts = urlsplit(mysql_dsn)
    limited = MySQLConnector(
        f"mysql://{user}:pw-ro-1@{parts.hostname}:{parts.port}/{db_name}", "shop_db"
    )
    try:
        rows = [{"__ref": f"r{i}", "id": i, **GOOD, "code": f"c{i}"} for i in range(1, 4)]
        with pytest.raises(FatalError, match="1142"):
            limited.apply(batch("b1", rows))
    finally:
        limited.close()
        db.run(f"DROP USER '{user}'@'%'")
    assert db.rows("SELECT count(*) FROM items") == [(0,)]
