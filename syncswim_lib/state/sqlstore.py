"""The state store's logic, written once over a DB-API cursor; the backends supply the
connection, the transactions and the few value conversions where the dialects differ."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from syncswim_lib import failpoints
from syncswim_lib.envelope import Change, Position, position_from_json
from syncswim_lib.errors import FatalError
from syncswim_lib.state import rowcodec, schema
from syncswim_lib.state.base import (
    Backlog,
    BatchRecord,
    ConflictRecord,
    ConflictStatus,
    JournalEntry,
    Link,
    Status,
)
from syncswim_lib.values import codec

STATUSES: frozenset[str] = frozenset(
    ("pending", "waiting", "applied", "skipped", "conflict", "failed", "parked")
)
CONFLICT_STATUSES: frozenset[str] = frozenset(("decided", "open", "resolved", "applied"))
RESOLUTIONS: frozenset[str] = frozenset(("a", "b", "value"))


class Cursor(Protocol):
    """What both sqlite3 and psycopg cursors offer, as far as the store uses it."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Iterable[Any], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


# the changes this store journaled lately, kept decoded (`SqlStateStore._recent`)
RECENT_CAP = 20_000

RecentKey = tuple[str, str, str, str, str]  # sync, side, table, position text, key text


class SqlStateStore:
    """A `StateStore` over one schema; subclasses open the connection and the transactions.

    A journaled change is usually read back by the same process moments later (a streaming
    run journals a batch, then plans it). Decoding its JSON again cost about as much as
    encoding it, so the changes this store object journaled are kept, as they read back
    from the journal, until they are read (at most `RECENT_CAP`, oldest dropped first). A
    journal row's change columns are never updated, so a kept change stays true; only
    changes whose rows this store inserted are kept (a row already there may differ)."""

    dialect: schema.Dialect
    _recent: dict[RecentKey, Change] | None = None

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
                    for statement in schema.migration(self.dialect, step):
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
        kept: list[tuple[RecentKey, Change]] = []

        def rows() -> Iterator[tuple[Any, ...]]:
            # encoded while inserting, so memory stays flat; an entry that cannot be
            # encoded raises inside the transaction and takes the position with it
            for entity, change in entries:
                r = rowcodec.change_to_row(change)
                commit_ts, detected_at = self._ts_in(r.commit_ts), self._ts_in(r.detected_at)
                detected = self._ts_out(detected_at)
                assert detected is not None, "detected_at is NOT NULL"
                back = rowcodec.as_read_back(change, self._ts_out(commit_ts), detected)
                kept.append(((sync, side, r.table_name, r.position, r.key), back))
                yield (
                    sync, entity, side, r.op, r.table_name, r.key_text, r.key, r.before,
                    r.after, r.changed_fields, r.position, r.position, commit_ts,
                    detected_at, r.origin, now,
                )  # fmt: skip

        with self._write() as cur:
            if position is not None:
                self._store_position(cur, sync, side, position, now)
            if not entries:
                return 0
            new = self._insert_changes(cur, rows())
        if new == len(kept):  # every row is ours as written; else keep none of them
            self._keep(kept)
        return new

    def _keep(self, changes: Sequence[tuple[RecentKey, Change]]) -> None:
        recent = self._recent
        if recent is None:
            recent = self._recent = {}
        for key, change in changes:
            recent[key] = change
        while len(recent) > RECENT_CAP:
            del recent[next(iter(recent))]

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
        counts: dict[str, int] = {}
        with self._read() as cur:
            cur.execute(self._q(schema.PENDING_COUNTS), (sync,))
            found = cur.fetchall()
            cur.execute(self._q(schema.DUE_COUNTS), (sync, self._ts_in(utcnow())))
            for entity, n in (*found, *cur.fetchall()):
                counts[str(entity)] = counts.get(str(entity), 0) + int(n)
        return counts

    def retry_due(self, sync: str, entity: str, now: datetime | None = None) -> int:
        with self._write() as cur:
            cur.execute(self._q(schema.RETRY_DUE), (sync, entity, self._ts_in(now or utcnow())))
            return max(cur.rowcount, 0)

    def requeue(
        self,
        sync: str,
        entity: str,
        side: str | None = None,
        keys: Sequence[dict[str, Any]] | None = None,
    ) -> int:
        query = schema.REQUEUE
        params: list[Any] = [sync, entity]
        if side is not None:
            query += " AND side = ?"
            params.append(side)
        with self._write() as cur:
            if keys is None:
                cur.execute(self._q(query), params)
                return max(cur.rowcount, 0)
            done = 0
            for key in keys:
                cur.execute(self._q(query + " AND key_text = ?"), (*params, codec.key_text(key)))
                done += max(cur.rowcount, 0)
            return done

    def backlog(self, sync: str) -> dict[str, Backlog]:
        with self._read() as cur:
            cur.execute(self._q(schema.BACKLOG), (sync,))
            return {
                str(entity): Backlog(int(n), self._ts_out(oldest))
                for entity, n, oldest in cur.fetchall()
            }

    def status_counts(self, sync: str, entity: str) -> dict[str, int]:
        with self._read() as cur:
            cur.execute(self._q(schema.STATUS_COUNTS), (sync, entity))
            return {str(status): int(n) for status, n in cur.fetchall()}

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
        _check_conflicts(batch)
        both = sorted({u.entry_id for u in batch.entries} & set(batch.release))
        if both:
            raise ValueError(f"journal entries {both} are both updated and released")
        now = utcnow()
        with self._write() as cur:
            self._update_entries(cur, batch, now)
            self._release_entries(cur, batch)
            self._upsert_links(cur, batch, now)
            failpoints.hit(failpoints.MID_STATE_COMMIT)
            for link in batch.delete_links:
                found = self._match_link(cur, batch.sync, batch.entity, link)
                if found is not None:
                    cur.execute(self._q(schema.DELETE_LINK), (found,))
            self._store_conflicts(cur, batch, now)
            for side, position in batch.positions:
                self._store_position(cur, batch.sync, side, position, self._ts_in(now))
            if batch.finished_batch_ids:
                finished = [(batch.sync, b) for b in batch.finished_batch_ids]
                cur.executemany(self._q(schema.FINISH_BATCH), finished)
                cur.executemany(self._q(schema.DELETE_PLAN), finished)

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

    def links_for_keys(
        self, sync: str, entity: str, side: Literal["a", "b"], keys: Sequence[dict[str, Any]]
    ) -> dict[str, Link]:
        if side not in ("a", "b"):
            raise ValueError(f"link side must be 'a' or 'b', not {side!r}")
        return self._links_in(side, sync, entity, [codec.key_text(k) for k in keys])

    def links_for_ext_ids(self, sync: str, entity: str, ext_ids: Sequence[str]) -> dict[str, Link]:
        return self._links_in("ext", sync, entity, list(ext_ids))

    def links(self, sync: str, entity: str) -> list[Link]:
        with self._read() as cur:
            cur.execute(self._q(schema.LINKS), (sync, entity))
            return [self._link(r) for r in cur.fetchall()]

    def link_texts(
        self, sync: str, entity: str
    ) -> Iterator[tuple[str | None, str | None, str | None]]:
        with self._read() as cur:
            cur.execute(self._q(schema.LINK_TEXTS), (sync, entity))
            while rows := cur.fetchmany(10_000):
                yield from ((r[0], r[1], r[2]) for r in rows)

    # apply plans -------------------------------------------------------------------------
    def save_plan(self, sync: str, entity: str, batch_id: str, plan: str) -> None:
        with self._write() as cur:
            cur.execute(
                self._q(schema.UPSERT_PLAN),
                (batch_id, sync, entity, plan, self._ts_in(utcnow())),
            )

    def load_plan(self, batch_id: str) -> str | None:
        with self._read() as cur:
            cur.execute(self._q(schema.SELECT_PLAN), (batch_id,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    # conflicts ---------------------------------------------------------------------------
    def active_conflicts(self, sync: str, entity: str) -> list[ConflictRecord]:
        with self._read() as cur:
            cur.execute(self._q(schema.ACTIVE_CONFLICTS), (sync, entity))
            return [self._conflict(r) for r in cur.fetchall()]

    def conflicts(
        self,
        sync: str | None = None,
        entity: str | None = None,
        status: ConflictStatus | None = None,
        limit: int = 1000,
    ) -> list[ConflictRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("sync", sync), ("entity", entity), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        query = f"SELECT {schema.CONFLICT_COLUMNS} FROM conflicts"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC LIMIT ?"
        with self._read() as cur:
            cur.execute(self._q(query), (*params, limit))
            return [self._conflict(r) for r in cur.fetchall()]

    def conflict(self, conflict_id: int) -> ConflictRecord | None:
        with self._read() as cur:
            cur.execute(self._q(schema.SELECT_CONFLICT), (conflict_id,))
            row = cur.fetchone()
        return None if row is None else self._conflict(row)

    def resolve_conflict(
        self, conflict_id: int, outcome: str, value: Any, note: str
    ) -> ConflictRecord:
        if outcome not in RESOLUTIONS:
            raise ValueError(f"a resolution's outcome is 'a', 'b' or 'value', not {outcome!r}")
        encoded = codec.dumps(value)  # before the transaction: an unstorable value changes nothing
        with self._write() as cur:
            cur.execute(
                self._q(schema.RESOLVE_CONFLICT),
                (outcome, encoded, self._ts_in(utcnow()), note, conflict_id),
            )
            cur.execute(self._q(schema.SELECT_CONFLICT), (conflict_id,))
            row = cur.fetchone()
        if row is None:
            raise KeyError(conflict_id)
        return self._conflict(row)

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
            self._q(schema.UPSERT_POSITION), (sync, side, rowcodec.position_text(position), now)
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
                1 if u.status in ("failed", "parked") else 0,
                self._ts_in(u.next_attempt_at) if u.status == "failed" else None,
                u.entry_id,
                batch.sync,
                batch.entity,
            )
            for u in batch.entries
        ]
        cur.executemany(self._q(schema.UPDATE_ENTRY), params)
        if cur.rowcount != len(params):
            self._missing(cur, "journal", batch, [u.entry_id for u in batch.entries])

    def _release_entries(self, cur: Cursor, batch: BatchRecord) -> None:
        if not batch.release:
            return
        params = [(i, batch.sync, batch.entity) for i in dict.fromkeys(batch.release)]
        cur.executemany(self._q(schema.RELEASE_ENTRY), params)
        if cur.rowcount != len(params):
            self._missing(cur, "journal", batch, batch.release)

    def _store_conflicts(self, cur: Cursor, batch: BatchRecord, now: datetime) -> None:
        new = [c for c in batch.conflicts if c.id is None]
        changed = [c for c in batch.conflicts if c.id is not None]
        if new:
            cur.executemany(
                self._q(schema.INSERT_CONFLICT),
                [self._conflict_row(c, now) for c in new],
            )
        if changed:
            params = [
                (
                    c.status,
                    c.outcome,
                    codec.dumps(c.value),
                    self._ts_in(c.resolved_at),
                    c.note,
                    c.id,
                    batch.sync,
                    batch.entity,
                )
                for c in changed
            ]
            cur.executemany(self._q(schema.UPDATE_CONFLICT), params)
            if cur.rowcount != len(params):
                ids = [c.id for c in changed if c.id is not None]
                self._missing(cur, "conflicts", batch, ids)

    def _conflict_row(self, c: ConflictRecord, now: datetime) -> tuple[Any, ...]:
        return (
            c.sync,
            c.entity,
            None if c.key_a is None else codec.key_text(c.key_a),
            codec.dumps_opt(c.key_a),
            None if c.key_b is None else codec.key_text(c.key_b),
            codec.dumps_opt(c.key_b),
            c.ext_id,
            c.field,
            codec.dumps(c.base_a),
            codec.dumps(c.base_b),
            codec.dumps(c.value_a),
            codec.dumps(c.value_b),
            self._ts_in(c.ts_a),
            self._ts_in(c.ts_b),
            c.rule,
            c.outcome,
            codec.dumps(c.value),
            bool(c.tie),
            c.status,
            codec.dumps([int(i) for i in c.entry_ids]),
            self._ts_in(c.created_at or now),
            self._ts_in(c.resolved_at),
            c.note,
        )

    def _missing(self, cur: Cursor, table: str, batch: BatchRecord, ids: Sequence[int]) -> None:
        """Raise ValueError naming the ids that are not rows of `table` in the batch's
        sync/entity (called when an update touched fewer rows than it was given)."""
        wanted = sorted(set(ids))
        known: set[int] = set()
        for start in range(0, len(wanted), schema.IN_CHUNK):
            chunk = wanted[start : start + schema.IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            cur.execute(
                self._q(
                    f"SELECT id FROM {table} WHERE sync = ? AND entity = ? AND id IN ({marks})"
                ),
                (batch.sync, batch.entity, *chunk),
            )
            known.update(int(i) for (i,) in cur.fetchall())
        missing = [i for i in wanted if i not in known]
        what = ("journal entries", "entries") if table == "journal" else ("conflicts", "conflicts")
        raise ValueError(f"{what[0]} {missing} are not {what[1]} of {batch.sync}/{batch.entity}")

    def _links_in(
        self, which: Literal["a", "b", "ext"], sync: str, entity: str, texts: list[str]
    ) -> dict[str, Link]:
        """key text (or ext id) -> link for the given values, IN_CHUNK values a query."""
        wanted = list(dict.fromkeys(texts))
        found: dict[str, Link] = {}
        if not wanted:
            return found
        with self._read() as cur:
            for start in range(0, len(wanted), schema.IN_CHUNK):
                chunk = wanted[start : start + schema.IN_CHUNK]
                query = schema.LINKS_BY_KEYS[which].format(marks=", ".join("?" for _ in chunk))
                cur.execute(self._q(query), (sync, entity, *chunk))
                for row in cur.fetchall():
                    found[str(row[-1])] = self._link(row[:-1])
        return found

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

    def _upsert_links(self, cur: Cursor, batch: BatchRecord, now: datetime) -> None:
        """All of a batch's links in a few set-based statements: the stored ids looked up
        IN_CHUNK keys a query, then one executemany for the new and one for the known.
        Links of one batch that designate each other (the same key twice) go one by one,
        so each sees the one before it, as a single upsert would."""
        links = list(batch.upsert_links)
        for link in links:
            if link.key_a is None and link.key_b is None and link.ext_id is None:
                raise ValueError(f"a link of {batch.sync}/{batch.entity} needs a key or an ext_id")
        texts = [self._link_texts(link) for link in links]
        seen: set[tuple[str, str]] = set()
        for t in texts:
            probes = [(w, v) for w, v in zip(("a", "b", "ext"), t, strict=True) if v is not None]
            if any(p in seen for p in probes):
                for link in links:
                    self._upsert_link(cur, batch, link, now)
                return
            seen.update(probes)
        ids: dict[str, dict[str, int]] = {}
        for i, which in enumerate(("a", "b", "ext")):
            wanted = [v for v in (t[i] for t in texts) if v is not None]
            ids[which] = self._link_ids_in(cur, which, batch.sync, batch.entity, wanted)
        new: list[tuple[Any, ...]] = []
        known: list[tuple[Any, ...]] = []
        stamp = self._ts_in(now)
        for link, (ta, tb, ext) in zip(links, texts, strict=True):
            found = (
                (ids["a"].get(ta) if ta is not None else None)
                or (ids["b"].get(tb) if tb is not None else None)
                or (ids["ext"].get(ext) if ext is not None else None)
            )
            values = (
                ta,
                # a one-column key's text is its JSON (`key_text` builds an integer's fast)
                ta
                if ta is not None and len(link.key_a or ()) == 1
                else codec.dumps_opt(link.key_a),
                tb,
                tb
                if tb is not None and len(link.key_b or ()) == 1
                else codec.dumps_opt(link.key_b),
                link.ext_id,
                codec.shadow_text(link.shadow),
                stamp,
            )
            if found is None:
                new.append((batch.sync, batch.entity, *values))
            else:
                known.append((*values, found))
        with self._constraint(f"a link of batch {batch.sync}/{batch.entity}"):
            if new:
                cur.executemany(self._q(schema.INSERT_LINK), new)
            if known:
                cur.executemany(self._q(schema.UPDATE_LINK), known)

    @staticmethod
    def _link_texts(link: Link) -> tuple[str | None, str | None, str | None]:
        return (
            None if link.key_a is None else codec.key_text(link.key_a),
            None if link.key_b is None else codec.key_text(link.key_b),
            link.ext_id,
        )

    def _link_ids_in(
        self, cur: Cursor, which: str, sync: str, entity: str, texts: list[str]
    ) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(texts))
        for start in range(0, len(wanted), schema.IN_CHUNK):
            chunk = wanted[start : start + schema.IN_CHUNK]
            query = schema.LINK_IDS_BY_KEYS[which].format(marks=", ".join("?" for _ in chunk))
            cur.execute(self._q(query), (sync, entity, *chunk))
            for text, link_id in cur.fetchall():
                found[str(text)] = int(link_id)
        return found

    def _upsert_link(self, cur: Cursor, batch: BatchRecord, link: Link, now: datetime) -> None:
        if link.key_a is None and link.key_b is None and link.ext_id is None:
            raise ValueError(f"a link of {batch.sync}/{batch.entity} needs a key or an ext_id")
        values = (
            None if link.key_a is None else codec.key_text(link.key_a),
            codec.dumps_opt(link.key_a),
            None if link.key_b is None else codec.key_text(link.key_b),
            codec.dumps_opt(link.key_b),
            link.ext_id,
            codec.shadow_text(link.shadow),
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
        return rowcodec.link_from_row(row)

    def _entry(self, row: Sequence[Any]) -> JournalEntry:
        kept = None
        if self._recent:
            # JOURNAL_COLUMNS: sync, side, table_name, position, key
            kept = self._recent.pop((row[1], row[3], row[5], row[10], row[6]), None)
        return rowcodec.entry_from_row(row, self._ts_out, kept)

    def _conflict(self, row: Sequence[Any]) -> ConflictRecord:
        return rowcodec.conflict_from_row(row, self._ts_out)


def _check_conflicts(batch: BatchRecord) -> None:
    """What `record` refuses before it starts: conflicts of another entity, unknown statuses."""
    for c in batch.conflicts:
        if (c.sync, c.entity) != (batch.sync, batch.entity):
            raise ValueError(
                f"a conflict of {c.sync}/{c.entity} in a batch of {batch.sync}/{batch.entity}"
            )
        if c.status not in CONFLICT_STATUSES:
            raise ValueError(f"unknown conflict status {c.status!r}")
