"""The connection's row reader (rows.py): every value as PyMySQL's reader and `to_canonical`
read it, through `fetch` and `snapshot`, and a value it refuses fails the read cleanly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pymysql
import pytest

from syncswim_lib.connectors.mysql import MySQLConnector
from syncswim_lib.connectors.mysql.rows import fused, read_row
from syncswim_lib.connectors.mysql.types import to_canonical
from syncswim_lib.errors import FatalError
from syncswim_lib.values import ColumnInfo

if TYPE_CHECKING:
    from conftest import Db

pytestmark = pytest.mark.integration

TABLE = """
CREATE TABLE every (
  id int NOT NULL PRIMARY KEY,
  tiny tinyint, small smallint unsigned, mid mediumint, big bigint unsigned, yr year,
  flag tinyint(1), bits bit(10),
  price decimal(12,2), wide decimal(65,30), ratio double, single float,
  born date, seen datetime(6), milli datetime(3), plain datetime, stamp timestamp(6) NULL,
  span time(6),
  code varchar(20), note text, longish mediumtext, fixed char(4),
  raw varbinary(8), padded binary(4), blobby blob,
  doc json, pick enum('a', 'b c'), many set('x', 'y', 'z'), ident uuid, addr inet6
)
"""

ROWS = [
    "(1, -128, 65535, -8388608, 18446744073709551615, 2024, 1, b'1010101010', "
    "'-1234567890.12', '12345678901234567890123456789012345.123456789012345678901234567890', "
    "1.5e300, 0.1, '2024-02-29', '2024-01-02 03:04:05.000006', '2024-01-02 03:04:05.120', "
    "'1999-12-31 23:59:59', '2038-01-19 03:14:07.999999', '12:34:56.000001', "
    "'😀 naïve', REPEAT('é', 300), REPEAT('x', 70000), 'ab', x'00ff', x'01', x'deadbeef', "
    "'{\"b\": [1, 2.5, null], \"a\": \"東京\"}', 'b c', 'z,x', "
    "'123e4567-e89b-12d3-a456-426614174000', '::1')",
    "(2, 0, 0, 0, 0, 1901, 0, b'0', '0.00', '0', -0.0, -3.4e38, '0000-00-00', "
    "'0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', "
    "'-838:59:59', '', '', '', '', '', '', '', '[]', 'a', '', "
    "'00000000-0000-0000-0000-000000000000', '0.0.0.0')",
    "(3, 1, 1, 1, 1, 2000, 2, b'1', '0.01', '1e-30', 1e-300, 1, '1000-01-01', "
    "'9999-12-31 23:59:59.999999', '1000-01-01 00:00:00.001', '2024-02-30 00:00:00', "
    "'1970-01-01 00:00:01', '838:59:59', 'tab\\there', 'line\\nbreak', NULL, 'a  ', NULL, NULL, "
    "NULL, 'null', NULL, 'x,y,z', NULL, NULL)",
    "(4" + ", NULL" * 29 + ")",
]


def _fill(db: Db) -> None:
    db.run(TABLE)
    # zero and invalid dates as an application without strict mode may store them
    db.run("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
    for row in ROWS:
        db.run(f"INSERT INTO every VALUES {row}")


def _expected(db: Db, connector: MySQLConnector) -> list[dict[str, Any]]:
    """The rows as PyMySQL's own reader gives them, through `to_canonical`."""
    info = connector.describe("every")
    rows = db.rows("SELECT * FROM every ORDER BY id")
    return [
        {c.name: to_canonical(v, c) for c, v in zip(info.columns, row, strict=True)} for row in rows
    ]


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for name in w:
            # the type too: True is not 1, a Decimal is not a float
            assert (type(g[name]), g[name]) == (type(w[name]), w[name]), (g["id"], name)


def test_fetch_reads_every_type_as_the_driver_and_to_canonical_do(
    connector: MySQLConnector, db: Db
) -> None:
    _fill(db)
    want = _expected(db, connector)
    got = sorted(connector.fetch("every", "id", [1, 2, 3, 4]), key=lambda r: r["id"])
    _same(got, want)
    # the values the reader takes apart by hand: long texts (2- and 3-byte lengths)
    assert got[0]["note"] == "é" * 300 and got[0]["longish"] == "x" * 70000
    assert got[1]["born"] == "0000-00-00" and got[2]["flag"] == 2


def test_snapshot_reads_every_type_as_fetch_does(connector: MySQLConnector, db: Db) -> None:
    db.run(
        "CREATE TABLE t (id int PRIMARY KEY, flag tinyint(1), born date, seen datetime(6),"
        " stamp timestamp(3) NULL, price decimal(12,2), doc json, note text, raw varbinary(4))"
    )
    db.run("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
    db.run(
        "INSERT INTO t VALUES (1, 1, '2024-01-02', '2024-01-02 03:04:05.000006', "
        "'2024-01-02 03:04:05.123', '1.25', '{\"a\": 1}', 'é', x'00'), "
        "(2, 2, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL, NULL, NULL, "
        "NULL), (3" + ", NULL" * 8 + ")"
    )
    names = ["id", "flag", "born", "seen", "stamp", "price", "doc", "note", "raw"]
    batches = list(connector.snapshot("t", names, ["id"], 2))
    read = [row for b in batches for row in b.to_pylist()]
    fetched = sorted(connector.fetch("t", "id", [1, 2, 3]), key=lambda r: r["id"])
    for snap, row in zip(read, fetched, strict=True):
        for name in names:
            if name == "doc":
                continue  # JSON travels as its text in the snapshot
            assert snap[name] == row[name], name
    assert read[1]["flag"] == 2 and read[1]["born"] == "0000-00-00"


def test_a_value_the_reader_refuses_fails_the_read_and_the_next_one_works(
    connector: MySQLConnector, db: Db
) -> None:
    db.run("CREATE TABLE j (id int PRIMARY KEY, doc json)")
    db.run("SET SESSION check_constraint_checks = 0")  # MariaDB's JSON is a checked text
    db.run("INSERT INTO j VALUES (1, '{\"a\": 1}'), (2, 'not json'), (3, '[]')")
    with pytest.raises(FatalError, match="fetching rows of j"):
        connector.fetch("j", "id", [1, 2, 3])
    # the connection whose result was left half read is not used again
    assert connector.fetch("j", "id", [1, 3]) == [{"id": 1, "doc": {"a": 1}}, {"id": 3, "doc": []}]
    with pytest.raises(FatalError, match=r"snapshot of \S*j on endpoint"):
        list(connector.snapshot("j", ["id", "doc"], ["id"], 10))


def test_read_row_takes_apart_every_length_form() -> None:
    fields: list[tuple[str | None, Any]] = [("utf-8", None), (None, None), ("ascii", int)]
    for size in (0, 250, 251, 65535, 65536, 1 << 24):
        text = b"a" * size
        if size < 251:
            head = bytes([size])
        elif size < 1 << 16:
            head = b"\xfc" + size.to_bytes(2, "little")
        elif size < 1 << 24:
            head = b"\xfd" + size.to_bytes(3, "little")
        else:
            head = b"\xfe" + size.to_bytes(8, "little")
        packet = b"xx" + head + text + b"\xfb" + b"\x0242"
        row, end = read_row(packet, 2, fields)
        assert row == ("a" * size, None, 42) and end == len(packet)
    # a row that ends before the result's last column stops there, as PyMySQL's reader
    assert read_row(b"\x01a", 0, fields) == (("a",), 2)


def test_fused_falls_back_to_the_driver_for_what_it_does_not_know() -> None:
    stamp = ColumnInfo("s", "timestamptz", "timestamp", nullable=True)
    read = fused(stamp, "ascii", pymysql.converters.convert_datetime)
    assert read is not None
    assert read("0000-00-00 00:00:00") == "0000-00-00 00:00:00"
    assert read("2024-02-30 00:00:00") == "2024-02-30 00:00:00"
    assert read("2024-01-02 03:04:05.5").microsecond == 500000
    flag = ColumnInfo("f", "bool", "tinyint(1)", nullable=True)
    read = fused(flag, "ascii", int)
    assert read is not None
    assert (read("0"), read("1"), read("7")) == (False, True, 7)
