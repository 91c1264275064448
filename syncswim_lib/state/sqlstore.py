"""The state store's logic, written once over a DB-API cursor; the backends supply the
connection, the transactions and the few value conversions where the dialects differ."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from syncswim_lib.envelope import Change, Position, position_from_json
from syncswim_lib.errors import FatalError
from syncswim_lib.state import codec, schema
from syncswim_lib.state.base import BatchRecord, JournalEntry, Link, Status

STATUSES: frozenset[str] = frozenset(
    ("pending", "waiting", "applied", "skipped", "conflict", "failed")
)


class Cursor(Protocol):
    """What both sqlite3 and psycopg cursors offer, as far as the store uses it."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Iterable[Any], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class SqlStateStore:
    """A `StateStore` over one schema; subclasses open the connection and the transactions."""

    dialect: schema.Dialect

    # backend hooks -----------------------------------------------------------------------
    def _write(self) -> contextlib.AbstractContextManager[Cursor]:
        """One write transaction: commits on leaving, rolls back on an exception."""
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _q(self, query: str) -> str:
        """The query with this driver's parameter marks."""
        return query

    def _ts_in(self, value: datetime | None) -> Any:
        return value

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def _integrity_errors(self) -> tuple[type[Exception], ...]:
        """The driver's exceptions for a violated constraint."""
        raise NotImplementedError

    def _database_errors(self) -> tuple[type[Exception], ...]:
        """The driver's exceptions for anything the database refused."""
        raise NotImplementedError

    def _where(self) -> str:
        """The store's location, for messages."""
        raise NotImplementedError

    def _prepare_schema(self, cur: Cursor) -> None:
        """What must happen before the tables are created, in the same transaction."""

    def close(self) -> None:
        raise NotImplementedError

    # schema ------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        """Create the tables when new, bring them to SCHEMA_VERSION; idempotent."""
        try:
            with self._write() as cur:
                self._prepare_schema(cur)
                for statement in schema.ddl(self.dialect):
                    cur.execute(statement)
                cur.execute("SELECT MAX(version) FROM schema_version")
                (found,) = cur.fetchone()
                if found is not None and found > schema.SCHEMA_VERSION:
                    raise FatalError(
                        f"the state store in {self._where()} is at schema version {found}, "
                        f"newer than this syncswim ({schema.SCHEMA_VERSION}): upgrade syncswim"
                    )
                version = 0 if found is None else int(found)
                for step in range(version + 1, schema.SCHEMA_VERSION + 1):
                    for statement in schema.MIGRATIONS.get(step, ()):
                        cur.execute(statement)
                    cur.execute(
                        self._q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"),
                        (step, self._ts_in(utcnow())),
                    )
        except self._database_errors() as e:
            raise FatalError(f"cannot set up the state store in {self._where()}: {e}") from e

    # journal -----------------------------------------------------------------------------
    def append_changes(
        self,
        sync: str,
        side: str,
        entries: Sequence[tuple[str, Change]],
        position: Position | None,
    ) -> int:
        now = self._ts_in(utcnow())

        def rows() -> Iterator[tuple[Any, ...]]:
            # encoded while inserting, so memory stays flat; an entry that cannot be
            # encoded raises inside the transaction and takes the position with it
            for entity, change in entries:
                r = codec.change_to_row(change)
                yield (
                    sync, entity, side, r.op, r.table_name, r.key_text, r.key, r.before,
                    r.after, r.changed_fields, r.position, r.position, self._ts_in(r.commit_ts),
                    self._ts_in(r.detected_at), r.origin, now,
                )  # fmt: skip

        with self._write() as cur:
            if position is not None:
                self._store_position(cur, sync, side, position, now)
            if not entries:
                return 0
            return self._insert_changes(cur, rows())

    def _insert_changes(self, cur: Cursor, rows: Iterator[tuple[Any, ...]]) -> int:
        """Insert journal rows (INSERT_CHANGE's parameters), skip known ones, count new."""
        cur.executemany(self._q(schema.INSERT_CHANGE), rows)
        return max(cur.rowcount, 0)

    def pending(
        self, sync: str, entity: str, limit: int = 10_000, after_id: int = 0
    ) -> list[JournalEntry]:
        with self._read() as cur:
            cur.execute(self._q(schema.PENDING), (sync, entity, after_id, limit))
            return [self._entry(r) for r in cur.fetchall()]

    def pending_counts(self, sync: str) -> dict[str, int]:
        with self._read() as cur:
            cur.execute(self._q(schema.PENDING_COUNTS), (sync,))
            return {str(entity): int(n) for entity, n in cur.fetchall()}

    def set_batch(self, entry_ids: Sequence[int], batch_id: str) -> list[int]:
        if not entry_ids:
            return []
        with self._write() as cur:
            cur.executemany(self._q(schema.SET_BATCH), [(batch_id, i) for i in entry_ids])
            cur.execute(self._q(schema.BATCH_IDS), (batch_id,))
            return [int(i) for (i,) in cur.fetchall()]

    def in_flight_batches(self, sync: str, entity: str) -> list[str]:
        with self._read() as cur:
            cur.execute(self._q(schema.IN_FLIGHT), (sync, entity))
            return [str(b) for (b,) in cur.fetchall()]

    def record(self, batch: BatchRecord) -> None:
        bad = sorted({u.status for u in batch.entries} - STATUSES)
        if bad:
            raise ValueError(f"unknown journal status {bad[0]!r}")
        now = utcnow()
        with self._write() as cur:
            self._update_entries(cur, batch, now)
            for link in batch.upsert_links:
                self._upsert_link(cur, batch, link, now)
            for link in batch.delete_links:
                found = self._match_link(cur, batch.sync, batch.entity, link)
                if found is not None:
                    cur.execute(self._q(schema.DELETE_LINK), (found,))
            for side, position in batch.positions:
                self._store_position(cur, batch.sync, side, position, self._ts_in(now))
            if batch.finished_batch_ids:
                cur.executemany(
                    self._q(schema.FINISH_BATCH),
                    [(batch.sync, b) for b in batch.finished_batch_ids],
                )

    def entries(
        self,
        sync: str | None = None,
        entity: str | None = None,
        status: Status | None = None,
        key: dict[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[JournalEntry]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("sync", sync), ("entity", entity), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if key is not None:
            where.append("key_text = ?")
            params.append(codec.key_text(key))
        query = f"SELECT {schema.JOURNAL_COLUMNS} FROM journal"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC LIMIT ?"
        with self._read() as cur:
            cur.execute(self._q(query), (*params, limit))
            return [self._entry(r) for r in cur.fetchall()]

    # links -------------------------------------------------------------------------------
    def link_by_key(
        self, sync: str, entity: str, side: Literal["a", "b"], key: dict[str, Any]
    ) -> Link | None:
        if side not in ("a", "b"):
            raise ValueError(f"link side must be 'a' or 'b', not {side!r}")
        return self._one_link(schema.LINK_BY[side], (sync, entity, codec.key_text(key)))

    def link_by_ext_id(self, sync: str, entity: str, ext_id: str) -> Link | None:
        return self._one_link(schema.LINK_BY["ext"], (sync, entity, ext_id))

    def links(self, sync: str, entity: str) -> list[Link]:
        with self._read() as cur:
            cur.execute(self._q(schema.LINKS), (sync, entity))
            return [self._link(r) for r in cur.fetchall()]

    # positions ---------------------------------------------------------------------------
    def get_position(self, sync: str, side: str) -> Position | None:
        with self._read() as cur:
            cur.execute(self._q(schema.SELECT_POSITION), (sync, side))
            row = cur.fetchone()
        return None if row is None else position_from_json(row[0])

    def set_position(self, sync: str, side: str, position: Position) -> None:
        with self._write() as cur:
            self._store_position(cur, sync, side, position, self._ts_in(utcnow()))

    # helpers -----------------------------------------------------------------------------
    def _store_position(
        self, cur: Cursor, sync: str, side: str, position: Position, now: Any
    ) -> None:
        cur.execute(
            self._q(schema.UPSERT_POSITION), (sync, side, codec.position_text(position), now)
        )

    def _update_entries(self, cur: Cursor, batch: BatchRecord, now: datetime) -> None:
        if not batch.entries:
            return
        stamp = self._ts_in(now)
        params = [
            (
                u.status,
                codec.dumps_opt(u.detail),
                stamp if u.status in ("applied", "skipped") else None,
                1 if u.status == "failed" else 0,
                u.entry_id,
                batch.sync,
                batch.entity,
            )
            for u in batch.entries
        ]
        cur.executemany(self._q(schema.UPDATE_ENTRY), params)
        if cur.rowcount != len(params):
            ids = sorted({u.entry_id for u in batch.entries})
            marks = ", ".join("?" for _ in ids)
            cur.execute(
                self._q(
                    f"SELECT id FROM journal WHERE sync = ? AND entity = ? AND id IN ({marks})"
                ),
                (batch.sync, batch.entity, *ids),
            )
            known = {int(i) for (i,) in cur.fetchall()}
            missing = [i for i in ids if i not in known]
            raise ValueError(
                f"journal entries {missing} are not entries of {batch.sync}/{batch.entity}"
            )

    def _match_link(self, cur: Cursor, sync: str, entity: str, link: Link) -> int | None:
        """The id of the stored link `link` designates: same key_a, else key_b, else ext_id."""
        probes: list[tuple[str, str]] = []
        if link.key_a is not None:
            probes.append(("a", codec.key_text(link.key_a)))
        if link.key_b is not None:
            probes.append(("b", codec.key_text(link.key_b)))
        if link.ext_id is not None:
            probes.append(("ext", link.ext_id))
        for which, value in probes:
            cur.execute(self._q(schema.LINK_BY[which]), (sync, entity, value))
            row = cur.fetchone()
            if row is not None:
                return int(row[0])
        return None

    def _upsert_link(self, cur: Cursor, batch: BatchRecord, link: Link, now: datetime) -> None:
        if link.key_a is None and link.key_b is None and link.ext_id is None:
            raise ValueError(f"a link of {batch.sync}/{batch.entity} needs a key or an ext_id")
        values = (
            None if link.key_a is None else codec.key_text(link.key_a),
            codec.dumps_opt(link.key_a),
            None if link.key_b is None else codec.key_text(link.key_b),
            codec.dumps_opt(link.key_b),
            link.ext_id,
            codec.dumps_opt(link.shadow),
            self._ts_in(now),
        )
        found = self._match_link(cur, batch.sync, batch.entity, link)
        with self._constraint(f"link {link.key_a} / {link.key_b} / {link.ext_id!r}"):
            if found is None:
                cur.execute(self._q(schema.INSERT_LINK), (batch.sync, batch.entity, *values))
            else:
                cur.execute(self._q(schema.UPDATE_LINK), (*values, found))

    @contextlib.contextmanager
    def _constraint(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._integrity_errors() as e:
            raise FatalError(f"state store: {what} conflicts with a stored one: {e}") from e

    def _one_link(self, query: str, params: tuple[Any, ...]) -> Link | None:
        with self._read() as cur:
            cur.execute(self._q(query), params)
            row = cur.fetchone()
        return None if row is None else self._link(row)

    def _link(self, row: Sequence[Any]) -> Link:
        return codec.link_from_row(row)

    def _entry(self, row: Sequence[Any]) -> JournalEntry:
        return codec.entry_from_row(row, self._ts_out)
