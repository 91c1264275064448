"""Staging for the set-based apply: a temporary table typed like the target, filled by COPY,
and the bisection that finds the rows a statement over it cannot write.

The staging table is `CREATE TEMP TABLE ... AS SELECT <target columns> ... WITH NO DATA`:
every column has the target column's type and modifier (so the server parses each value
exactly as an INSERT into the target would) but none of its constraints or defaults, which
the statement from the staging table into the target then meets in the target itself. Two
extra columns carry each row's ordinal (its place in the batch, which orders inserts and
delimits the rows a statement works on) and its `__ref`. The table is dropped at commit
(kept tables, ON COMMIT DELETE ROWS, would cost every later commit of the session that
touches a temporary table a truncation of each of them).

A part of a few rows is not staged: CREATE TABLE, COPY and DROP cost more than the rows.
Its values are given to the statement as one text array per column (`Arrays`), each
element cast to the column's type, which reads it with the type's input function as
COPY does (for the types whose explicit cast truncates, character and bit strings, to
the type without its length, so that storing into the column refuses what is too long).

COPY uses the text format: the server reads every value with the column type's own input
function, so NUMERIC keeps every digit, `json` keeps its text, and uuid, time and other
types given as the server's text output arrive as they are. The text is built column by
column: by Arrow's casts where the batch's Arrow type already holds what the column
stores and Arrow's text of it is exact (integers, float64, booleans, dates, decimals of
the column's scale, microsecond UTC timestamps, text within the column's length, jsonb
text); otherwise each value goes through `coerce` and `db_param`, as a row by row write
sends it, and psycopg's own text dumpers.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from syncswim_lib.connectors.postgres.connection import (
    error_text,
    is_record_error,
    raise_translated,
)
from syncswim_lib.connectors.postgres.types import db_param
from syncswim_lib.values import ColumnInfo
from syncswim_lib.values.coerce import coerce

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa
    from psycopg import sql
    from psycopg.abc import Transformer

ORD = "_syncswim_ord"  # the row's ordinal in its part of the batch
REF = "_syncswim_ref"  # the row's __ref

T = TypeVar("T")
R = TypeVar("R")


class Item(NamedTuple):
    """One staged row as the statements over the staging table see it."""

    ord: int
    ref: str


class RowRefused(Exception):
    """A statement wrote something else than one row per row asked (a trigger skipped a row):
    the rows are bisected as for a database error, and a single one is rejected with this."""


class Unstorable(NamedTuple):
    """In place of a value its column cannot hold: why."""

    message: str


def converter(column: ColumnInfo) -> Callable[[Any], Any]:
    """The function turning a canonical value into what COPY is given for `column`;
    ValueError when the column cannot hold the value."""

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if column.family == "decimal":
            # the default context's 28 digits cannot quantize a numeric(38,18) value
            with decimal.localcontext(prec=decimal.MAX_PREC):
                out = db_param(coerce(value, column), column)
        else:
            out = db_param(coerce(value, column), column)
        if isinstance(out, str) and "\x00" in out:
            # PostgreSQL text cannot hold NUL; psycopg would fail the whole COPY client-side
            raise ValueError(
                f"cannot store text with a NUL character in column {column.name} ({column.db_type})"
            )
        return out

    return convert


def _unchanged(column: ColumnInfo, typ: pa.DataType) -> bool:
    """Does `converter(column)` give back every value of an Arrow column of type `typ` as
    `to_pylist` reads it, and is Arrow's text of those values one the server reads as
    the same value? Then the column goes to COPY without a Python call per value."""
    import pyarrow as pa

    family = column.family
    if family == "int":
        return bool(pa.types.is_integer(typ))
    if family == "float":
        return bool(pa.types.is_float64(typ))  # float32's text is shorter than its value
    if family == "bool":
        return bool(pa.types.is_boolean(typ))
    if family == "date":
        return bool(pa.types.is_date32(typ))
    if family == "decimal":
        # the same scale: quantizing changes nothing, and no more digits than the column
        return (
            pa.types.is_decimal(typ)
            and column.scale == typ.scale
            and column.precision is not None
            and typ.precision <= column.precision
        )
    if family == "timestamptz":
        return _utc_us(typ) and _all_digits(column)
    return False


def _utc_us(typ: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_timestamp(typ) and typ.unit == "us" and typ.tz in ("UTC", "+00:00"))


def _all_digits(column: ColumnInfo) -> bool:
    """The column keeps microseconds: `coerce` truncates nothing."""
    return column.precision is None or column.precision >= 6


def escape(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """COPY text format: a backslash, newline, carriage return or tab in a value is escaped."""
    import pyarrow.compute as pc

    for char, escaped in (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, char, escaped)
    return text


@dataclass
class Encoded:
    """One batch column ready for COPY."""

    # each value's COPY field (escaped) as Arrow binary, NULL as null; for a few rows, the
    # values' text (not escaped) in a list, NULL as None
    text: pa.Array | pa.ChunkedArray | list[str | None]
    bad: dict[int, str]  # row index -> why the column cannot hold the row's value
    values: list[Any] | None  # the values as psycopg sends them, when asked for


# Below this many values Arrow's per-call cost is more than converting them one by one.
TINY = 16


def _exact_text(
    column: ColumnInfo, array: pa.ChunkedArray, values: bool
) -> tuple[pa.ChunkedArray | None, list[Any] | None]:
    """The text of `array`'s values for `column` computed by Arrow, where that text is the
    one the server reads as the value `coerce` and `db_param` would send (None: not so),
    and with `values` the values themselves."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = array.type
    if _unchanged(column, typ):
        return pc.cast(array, pa.string()), array.to_pylist() if values else None
    if column.family == "timestamp" and _utc_us(typ) and _all_digits(column):
        # what db_param sends a zone-less column: the UTC wall-clock time
        naive = pc.cast(array, pa.timestamp("us"))
        return pc.cast(naive, pa.string()), naive.to_pylist() if values else None
    if not pa.types.is_string(typ):
        return None, None
    if column.family == "json" and column.db_type == "jsonb" and not values:
        # the batch's JSON text as it is: jsonb keeps the value, not the text, so this
        # stores what parsing and dumping it again would (a JSON null is NULL, as
        # `coerce` makes it); text that is no JSON is refused by the server, and that row
        # alone is then rejected
        null = pc.equal(pc.utf8_trim_whitespace(array), "null")
        return pc.if_else(null, pa.scalar(None, pa.string()), array), None
    if column.family in ("text", "uuid"):
        too_long = column.max_length is not None and (
            (pc.max(pc.utf8_length(array)).as_py() or 0) > column.max_length
        )
        if not too_long and not pc.any(pc.match_substring(array, "\x00")).as_py():
            return array, array.to_pylist() if values else None
    return None, None


def encode(
    column: ColumnInfo,
    array: pa.ChunkedArray,
    tx: Transformer,
    values: bool = False,
    few: bool = False,
) -> Encoded:
    """`array` (a batch column) as the COPY fields of `column`; with `values`, also the
    values themselves (for keys, which statements and Python compare). `few`: the column
    of a part given to its statements as arrays (`Arrays`): its values' text unescaped."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from psycopg.adapt import PyFormat

    text, kept = (None, None) if len(array) <= TINY else _exact_text(column, array, values)
    if text is not None:
        if few:
            return Encoded(text.to_pylist(), {}, kept)
        return Encoded(escape(pc.cast(text, pa.binary())), {}, kept)
    out, bad = _converted(column, array)
    # psycopg's own text dumpers: the very text `write_row` would send
    fields = tx.dump_sequence(out, [PyFormat.TEXT] * len(out))
    kept = out if values else None
    if few:
        return Encoded([None if f is None else bytes(f).decode() for f in fields], bad, kept)
    return Encoded(escape(pa.array(fields, pa.binary())), bad, kept)


def _converted(column: ColumnInfo, array: pa.ChunkedArray) -> tuple[list[Any], dict[int, str]]:
    """The values as psycopg sends them (None where impossible), and why not, by index."""
    convert = converter(column)
    raw = array.to_pylist()
    try:
        return [convert(v) for v in raw], {}
    except ValueError:
        out = [_one(convert, v) for v in raw]
        bad = {i: v.message for i, v in enumerate(out) if isinstance(v, Unstorable)}
        return [None if isinstance(v, Unstorable) else v for v in out], bad


def _one(convert: Callable[[Any], Any], value: Any) -> Any:
    try:
        return convert(value)
    except ValueError as exc:
        return Unstorable(str(exc))


def copy_lines(
    refs: pa.Array | pa.ChunkedArray | None,
    columns: Sequence[pa.Array | pa.ChunkedArray],
    order: Sequence[int],
    masks: Sequence[Sequence[bool] | None],
) -> list[bytes]:
    """The COPY lines (without their newline) of the batch rows `order` (indexes into
    `refs` and each column), numbered from 0: ordinal, ref, then each column's field, a
    column NULL where its mask (one flag per line) is False. Without `refs`: the columns'
    fields only (a COPY straight into the target)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not order:
        return []
    at = pa.array(order, pa.int64())
    null = pa.scalar(None, pa.binary())
    fields = []
    if refs is not None:
        fields = [
            pc.cast(pc.cast(pa.array(range(len(order)), pa.int64()), pa.string()), pa.binary()),
            pc.take(refs, at),
        ]
    for text, mask in zip(columns, masks, strict=True):
        field = pc.take(text, at)
        if mask is not None:
            field = pc.if_else(pa.array(mask, pa.bool_()), field, null)
        fields.append(pc.fill_null(field, pa.scalar(b"\\N", pa.binary())))
    if len(fields) == 1:
        return fields[0].to_pylist()  # type: ignore[no-any-return]
    lines = pc.binary_join_element_wise(*fields, pa.scalar(b"\t", pa.binary()))
    return lines.to_pylist()  # type: ignore[no-any-return]


class NeedsCare(Exception):
    """A row failed an attempt made without savepoints: the transaction is lost, and the
    whole batch is to be applied again with them (`bisected(careful=True)`)."""


def bisected(
    conn: psycopg.Connection,
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], R],
    reject: Callable[[T, str], None],
    what: str,
    explain: Callable[[T, psycopg.Error], str] = lambda _, exc: error_text(exc),
    careful: bool = True,
) -> list[tuple[Sequence[T], R]]:
    """Run `attempt(items)` in a savepoint. When it fails because of a row's values (a
    record error, or RowRefused), run each half the same way, the first half first, so
    rows are written in their order and a row that conflicts with an earlier one of the
    batch is the one refused; a single item that fails is rejected with the error's text
    (`explain`). Returns the (items, result) of every attempt that succeeded, in order; any
    other error rolls back the whole apply.

    Not `careful`: no savepoint (two round trips less, which is most of what a batch of
    a row or two costs), and NeedsCare when a row fails."""
    import psycopg

    if not careful:
        try:
            return [(items, attempt(items))]
        except RowRefused as exc:
            raise NeedsCare from exc
        except psycopg.Error as exc:
            if not is_record_error(exc):
                raise_translated(exc, what)
            raise NeedsCare from exc
    try:
        with conn.transaction():
            result = attempt(items)
        return [(items, result)]
    except RowRefused as exc:
        if len(items) == 1:
            reject(items[0], str(exc))
            return []
    except psycopg.Error as exc:
        if not is_record_error(exc):
            raise_translated(exc, what)
        if len(items) == 1:
            reject(items[0], explain(items[0], exc))
            return []
    middle = len(items) // 2
    return bisected(conn, items[:middle], attempt, reject, what, explain) + bisected(
        conn, items[middle:], attempt, reject, what, explain
    )


_COPY_CONTEXT = re.compile(r"^COPY [^,]*, line \d+, column (.*?): ", re.MULTILINE)


def copy_error_text(exc: psycopg.Error, table: str) -> str:
    """A COPY error as the rejected row's message: the server's message naming the target
    column, not the staging table and line the COPY context names."""
    primary = exc.diag.message_primary
    if primary is None:
        return error_text(exc)
    text = primary if exc.diag.message_detail is None else f"{primary} {exc.diag.message_detail}"
    found = _COPY_CONTEXT.search(exc.diag.context or "")
    return f"{text} (column {found.group(1)} of {table})" if found else text


_TRUNCATING = re.compile(r"^(character varying|character|bit varying|bit)\(\d+\)")
_BARE = {"character": "bpchar", "bit": "varbit"}  # bare `character` and `bit` have length 1


def cast_type(column: ColumnInfo) -> str:
    """The type a text is cast to for `column`: its own, but for character and bit strings
    without the length an explicit cast would cut the text to."""
    return _TRUNCATING.sub(lambda m: _BARE.get(m[1], m[1]), column.db_type)


class Arrays:
    """The rows of a part as a statement's source `_s` of the same columns as a `Stage`:
    one array parameter per column (ordinals, refs, then each column's text)."""

    def __init__(self, columns: Sequence[ColumnInfo], fields: Callable[[Item], list[Any]]):
        self.fields = fields  # an item's texts, one per column (None: NULL)
        self.columns = list(columns)
        self.width = len(columns)
        # what the clause is made of (statement texts are kept by it)
        self.key = ("arrays", tuple((c.name, cast_type(c)) for c in self.columns))

    @property
    def clause(self) -> sql.Composable:
        from psycopg import sql

        names = [sql.Identifier(f"_c{i}") for i in range(self.width)]
        return sql.SQL("(SELECT {} FROM unnest({}) AS _u({})) AS _s").format(
            sql.SQL(", ").join(
                [
                    sql.SQL("_u._o AS {}").format(sql.Identifier(ORD)),
                    sql.SQL("_u._r AS {}").format(sql.Identifier(REF)),
                    *(
                        sql.SQL("{}::{} AS {}").format(
                            n, sql.SQL(cast_type(c)), sql.Identifier(c.name)
                        )
                        for n, c in zip(names, self.columns, strict=True)
                    ),
                ]
            ),
            # binary arrays: psycopg quotes no element (quoting text arrays costs more)
            sql.SQL(", ").join(
                [sql.SQL("%b::int4[]"), *([sql.SQL("%b::text[]")] * (1 + len(names)))]
            ),
            sql.SQL(", ").join([sql.SQL("_o"), sql.SQL("_r"), *names]),
        )

    def params(self, part: Sequence[Item]) -> list[Any]:
        rows = [self.fields(i) for i in part]
        return [
            [i.ord for i in part],
            [i.ref for i in part],
            *([row[c] for row in rows] for c in range(self.width)),
        ]

    def delete(self, ords: Sequence[int]) -> None:
        """Nothing to do: a statement's source holds the items it is given, no others."""

    def explain(self, conn: psycopg.Connection, table: str, item: Item, exc: psycopg.Error) -> str:
        """The rejection text of `item`'s error, naming the column whose text the server
        cannot read (a cast fails in the statement, which does not say which)."""
        import psycopg
        from psycopg import sql

        text = error_text(exc)
        if (getattr(exc, "sqlstate", None) or "")[:2] != "22":
            return text
        for column, field in zip(self.columns, self.fields(item), strict=True):
            if field is None:
                continue
            try:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("SELECT %s::{}").format(sql.SQL(cast_type(column))), [field]
                    )
            except psycopg.Error as probe:
                if not is_record_error(probe):
                    raise_translated(probe, f"apply to {table}")
                return f"{text} (column {column.name} of {table})"
        return text


class Stage:
    """One staging table: `ORD`, `REF`, then `columns` typed as the target's."""

    def __init__(
        self,
        conn: psycopg.Connection,
        name: str,
        target: sql.Identifier,
        table: str,
        columns: Sequence[ColumnInfo],
    ) -> None:
        from psycopg import sql

        self.conn = conn
        self.ident = sql.Identifier(name)
        self.clause = sql.SQL("{} AS _s").format(self.ident)
        self.key = ("stage", name)
        self.target = target
        self.table = table
        self.columns = list(columns)
        select = sql.SQL(", ").join(
            [
                sql.SQL("NULL::int4 AS {}").format(sql.Identifier(ORD)),
                sql.SQL("NULL::text AS {}").format(sql.Identifier(REF)),
                *(sql.Identifier("_t", c.name) for c in self.columns),
            ]
        )
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} AS _t WITH NO DATA"
            ).format(self.ident, select, target)
        )
        self._copy = sql.SQL("COPY {} FROM STDIN").format(self.ident)

    def params(self, part: Sequence[Item]) -> list[Any]:
        return []  # the table holds the rows

    def load(
        self,
        lines: Sequence[bytes],
        items: Sequence[Item],
        reject: Callable[[Item, str], None],
        chunk: int,
        careful: bool,
    ) -> None:
        """COPY `lines` (see `copy_lines`; one per item) into the table, `chunk` per
        savepoint; a row the server cannot read into its column types is found by
        bisection and rejected (see `bisected` for `careful`)."""
        import psycopg

        def attempt(part: Sequence[tuple[bytes, Item]]) -> None:
            try:
                with self.conn.cursor() as cur, cur.copy(self._copy) as out:
                    out.write(b"\n".join(line for line, _ in part) + b"\n")
            except psycopg.Error as exc:
                # a single row: name the target's column, not the staging table's COPY line
                if is_record_error(exc) and len(part) == 1:
                    raise RowRefused(copy_error_text(exc, self.table)) from exc
                raise

        pairs = list(zip(lines, items, strict=True))
        for start in range(0, len(pairs), chunk):
            bisected(
                self.conn,
                pairs[start : start + chunk],
                attempt,
                lambda pair, message: reject(pair[1], message),
                f"staging rows for {self.table}",
                careful=careful,
            )

    def delete(self, ords: Sequence[int]) -> None:
        """Take rows out of the table (rows another statement wrote or rejected)."""
        from psycopg import sql

        if ords:
            self.conn.execute(
                sql.SQL(
                    "DELETE FROM {} AS _s USING unnest(%s::int4[]) AS _o(o) WHERE _s.{} = _o.o"
                ).format(self.ident, sql.Identifier(ORD)),
                [list(ords)],
            )
