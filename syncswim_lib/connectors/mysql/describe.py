"""Table descriptions from information_schema: columns, primary key, unique column sets."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from syncswim_lib.connectors.mysql.types import family_for
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo

if TYPE_CHECKING:
    import pymysql

_COLUMNS_SQL = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE,
       DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH, EXTRA, CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
_PK_SQL = """
SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'
ORDER BY ORDINAL_POSITION
"""
# Unique indexes, the primary key first. A MySQL functional index part has no COLUMN_NAME:
# such an index makes no column set unique and is left out.
_UNIQUE_SQL = """
SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0
ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX
"""
# MariaDB only: MySQL's CHECK_CONSTRAINTS has no TABLE_NAME, and MySQL has a real JSON type.
_CHECKS_SQL = """
SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s
"""
_JSON_VALID = re.compile(r"json_valid\(\s*`((?:[^`]|``)+)`\s*\)", re.IGNORECASE)
_TIME_TYPES = {"datetime", "timestamp", "time"}


def _json_checked_columns(conn: pymysql.Connection, db: str, table: str) -> set[str]:
    import pymysql

    with conn.cursor() as cur:
        try:
            cur.execute(_CHECKS_SQL, (db, table))
        except pymysql.err.OperationalError:  # MySQL: unknown column TABLE_NAME
            return set()
        rows = cur.fetchall()
    return {m.replace("``", "`") for (clause,) in rows for m in _JSON_VALID.findall(clause)}


def _column(row: tuple[Any, ...], json_cols: set[str]) -> ColumnInfo:
    name, data_type, column_type, nullable, num_prec, num_scale, dt_prec, max_len, extra = row[:9]
    charset = row[9]
    extra = (extra or "").lower()
    data_type = data_type.lower()
    family = family_for(data_type, column_type, name in json_cols)
    if data_type in _TIME_TYPES:
        precision = dt_prec
        scale = None
    elif family == "decimal":
        precision, scale = num_prec, num_scale
    else:
        precision = scale = None
    # generated columns (VIRTUAL/STORED/PERSISTENT) are made by the database, like serials
    generated = "auto_increment" in extra or "generated" in extra or "persistent" in extra
    generated = generated or extra.strip() == "virtual"
    return ColumnInfo(
        name=name,
        family=family,
        db_type=column_type,
        nullable=nullable == "YES",
        precision=int(precision) if precision is not None else None,
        scale=int(scale) if scale is not None else None,
        max_length=int(max_len) if max_len is not None and family != "json" else None,
        auto_generated=generated,
        # only text is judged by its character set (a JSON column's is the server's own)
        charset=str(charset).lower() if charset and family == "text" else None,
    )


def describe_table(
    conn: pymysql.Connection, db: str, table: str, *, name: str, endpoint: str
) -> TableInfo:
    """`name` is how the caller named the table (for the message and `TableInfo.name`)."""
    with conn.cursor() as cur:
        cur.execute(_COLUMNS_SQL, (db, table))
        rows = cur.fetchall()
        if not rows:
            raise ConfigError(f"table {name} does not exist in endpoint {endpoint} (database {db})")
        cur.execute(_PK_SQL, (db, table))
        pk = tuple(r[0] for r in cur.fetchall())
        cur.execute(_UNIQUE_SQL, (db, table))
        indexes: dict[str, list[str | None]] = {}
        for index, column in cur.fetchall():
            indexes.setdefault(index, []).append(column)
    json_cols: set[str] = set()
    if any(r[1].lower() in ("longtext", "text", "mediumtext") for r in rows):
        json_cols = _json_checked_columns(conn, db, table)
    columns = tuple(_column(r, json_cols) for r in rows)
    unique = tuple(
        dict.fromkeys(tuple(c for c in cols if c) for cols in indexes.values() if all(cols))
    )
    return TableInfo(name=f"{db}.{table}", columns=columns, primary_key=pk, unique=unique)
