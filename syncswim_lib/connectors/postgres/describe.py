"""Columns, primary key and unique column sets of a table, read from pg_catalog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncswim_lib.connectors.postgres.connection import split_table
from syncswim_lib.connectors.postgres.types import family_of
from syncswim_lib.errors import ConfigError
from syncswim_lib.values import ColumnInfo, TableInfo

if TYPE_CHECKING:
    import psycopg

_TABLE_OID = """
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""

# Domains are reduced to their base type (one level: nested domains are rare).
_COLUMNS = """
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       NOT a.attnotnull,
       bt.typname,
       bt.typtype,
       CASE WHEN a.atttypmod <> -1 THEN a.atttypmod ELSE t.typtypmod END,
       a.attidentity,
       a.attgenerated,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_PRIMARY_KEY = """
SELECT a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""

# Unique indexes (those behind PRIMARY KEY and UNIQUE constraints included), primary key
# first. Partial and expression indexes are left out: they make no column set unique.
_UNIQUE = """
SELECT array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indexrelid, i.indisprimary, ic.relname
ORDER BY i.indisprimary DESC, ic.relname
"""


def _modifiers(type_name: str, typmod: int) -> tuple[int | None, int | None, int | None]:
    """(precision, scale, max_length) from a type modifier."""
    if typmod < 0:
        return None, None, None
    if type_name == "numeric":
        raw = typmod - 4
        # PostgreSQL 15 allows a negative scale, stored as an 11-bit two's complement
        scale = ((raw & 0x7FF) ^ 1024) - 1024
        return (raw >> 16) & 0xFFFF, scale, None
    if type_name in ("varchar", "bpchar"):
        return None, None, typmod - 4
    if type_name in ("timestamp", "timestamptz", "time", "timetz"):
        return typmod, None, None
    return None, None, None


def describe_table(conn: psycopg.Connection, name: str, endpoint: str) -> TableInfo:
    schema, table = split_table(name)
    qualified = f"{schema}.{table}"
    row = conn.execute(_TABLE_OID, (schema, table)).fetchone()
    if row is None:
        raise ConfigError(f"table {qualified} does not exist in endpoint {endpoint}")
    oid = row[0]
    columns = []
    for (
        col_name,
        db_type,
        nullable,
        base_name,
        base_type,
        typmod,
        identity,
        generated,
        default,
    ) in conn.execute(_COLUMNS, (oid,)).fetchall():
        precision, scale, max_length = _modifiers(base_name, typmod)
        auto = bool(identity) or bool(generated) or str(default or "").startswith("nextval(")
        columns.append(
            ColumnInfo(
                name=col_name,
                family=family_of(base_name, base_type),
                db_type=db_type,
                nullable=bool(nullable),
                precision=precision,
                scale=scale,
                max_length=max_length,
                auto_generated=auto,
            )
        )
    primary_key = tuple(r[0] for r in conn.execute(_PRIMARY_KEY, (oid,)).fetchall())
    unique = tuple(dict.fromkeys(tuple(r[0]) for r in conn.execute(_UNIQUE, (oid,)).fetchall()))
    return TableInfo(qualified, tuple(columns), primary_key, unique)
