"""What capture costs per change on the client: this checkout against an earlier revision,
interleaved.

Starts one private PostgreSQL and one MariaDB (the sandbox servers) in a temporary folder,
creates a table of every type family on each (integers, decimals at full precision,
booleans / tinyint(1), dates, timestamps with and without zone, JSON, unicode text, bytes,
NULLs, a TOASTed text on PostgreSQL, zero dates on MariaDB), and commits `--changes`
changes: single-row autocommit UPDATEs (`--shape autocommit`), or the same UPDATEs in
transactions of 1,000 (`--shape transactions`). Then, for each repetition and each code
version (interleaved, so both see the same machine), a child process with that version
on its path (the order alternating between repetitions) reads those changes back through
each reader and reports its own CPU per change (`time.process_time`, which the servers'
work is not part of) and the wall time:

- `pg_decode`: the pgoutput messages (peeked once beforehand) through `capture.assemble`,
  decoding alone;
- `pg_peek`: `capture.capture_changes` on the slot (the micro-batch path: peek + decode);
- `pg_stream`: a `ReplicationStream` from the slot's start until it holds every change;
- `my_batch`: `capture.read_binlog` from the position before the changes (micro-batch);
- `my_stream`: a `BinlogStream` from that position until it holds every change.

Each child also prints a digest of the changes it built (op, table, key, before, after,
changed fields, position, commit time, origin): the versions must agree, value for value.

    .venv/bin/python bench/capture_cost.py [--changes 20000] [--reps 3] [--baseline REV]
        [--shape autocommit|transactions] [--only pg_decode,my_batch,...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
READERS = ("pg_decode", "pg_peek", "pg_stream", "my_batch", "my_stream")
SYNC = "capcost"
ROWS = 1_000
WORDS = ("alpha", "naïve", "Größe", "東京", "😀 smile", "quote's", 'say "hi"', "tab\there", "")

PG_DDL = """CREATE TABLE items (
    id bigint PRIMARY KEY, title varchar(100), body text, qty integer, small smallint,
    amount numeric(12,2), big numeric(40,12), active boolean, due date, seen_at timestamptz,
    local_at timestamp, doc jsonb, doc_text json, score double precision, ratio real,
    raw bytea, u uuid, t time, tags text[], long_text text
)"""
MY_DDL = """CREATE TABLE items (
    id bigint PRIMARY KEY, title varchar(100), body text, qty int, small smallint unsigned,
    amount decimal(12,2), big decimal(40,12), active tinyint(1), due date, seen_at datetime(6),
    stamp timestamp(6) NULL, doc json, score double, ratio float, raw varbinary(40),
    fixed binary(4), flags bit(5), kind enum('a','b','c'), opts set('x','y','z'), t time(3),
    zero_day date
) DEFAULT CHARSET=utf8mb4"""


def _row(rng: random.Random, i: int) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.1 else value

    word = rng.choice(WORDS)
    return {
        "title": maybe(f"{word} {i}"),
        "body": maybe(word * rng.randint(1, 5)),
        "qty": maybe(rng.randint(-1_000_000, 1_000_000)),
        "small": maybe(rng.randint(0, 30_000)),
        "amount": maybe(Decimal(rng.randint(-(10**9), 10**9)) / 100),
        "big": maybe(Decimal(f"{rng.randint(0, 10**27)}.{rng.randint(0, 10**12 - 1):012d}")),
        "active": maybe(rng.random() < 0.5),
        "due": maybe(date(2000, 1, 1) + timedelta(days=rng.randint(0, 20_000))),
        "seen_at": maybe(
            datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(0, 10**14))
        ),
        "doc": maybe({"n": i, "w": word, "l": [1, 2.5, None, True], "d": {"k": "ü"}}),
        "score": maybe(rng.random() * 1e6),
        "ratio": maybe(rng.choice((0.1, 0.5, 3.25, -7.0))),
        "raw": maybe(rng.randbytes(rng.randint(0, 20))),
        "t": maybe(f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"),
    }


# -- setup (the parent, this checkout) ---------------------------------------------------------


def setup_pg(dsn: str, changes: int, shape: str) -> list[bytes]:
    import psycopg
    from psycopg.types.json import Json, Jsonb

    from syncswim_lib.connectors.postgres.connector import PostgresConnector

    rng = random.Random(1)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(PG_DDL)
        with c.cursor() as cur:
            for i in range(1, ROWS + 1):
                r = _row(rng, i)
                cur.execute(
                    "INSERT INTO items VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                    "%s,%s,%s,%s,%s)",
                    (
                        i, r["title"], r["body"], r["qty"], r["small"], r["amount"], r["big"],
                        r["active"], r["due"], r["seen_at"],
                        None if r["seen_at"] is None else r["seen_at"].replace(tzinfo=None),
                        None if r["doc"] is None else Jsonb(r["doc"]),
                        None if r["doc"] is None else Json(r["doc"]),
                        r["score"], r["ratio"], r["raw"],
                        f"00000000-0000-4000-8000-{i:012d}", r["t"], [r["title"], None, "x,y"],
                        # incompressible and over 2 kB: TOASTed, not resent by updates
                        None if i % 3 else rng.randbytes(3000).hex(),
                    ),
                )  # fmt: skip
    connector = PostgresConnector(dsn, "bench")
    try:
        connector.setup(SYNC, ["public.items"])
    finally:
        connector.close()
    with psycopg.connect(dsn, autocommit=True) as c:
        _changes(c, changes, shape, rng, "pg")
        rows = c.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)",
            (f"syncswim_{SYNC}", f"syncswim_{SYNC}"),
        ).fetchall()
    return [bytes(r[0]) for r in rows]


def setup_my(root: str, changes: int, shape: str) -> tuple[str, str, int]:
    import pymysql

    host, port = root.split("@", 1)[1].rstrip("/").split(":")
    conn = pymysql.connect(host=host, port=int(port), user="root", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE capcost CHARACTER SET utf8mb4")
        cur.execute("USE capcost")
        cur.execute("SET time_zone = '+00:00', sql_mode = ''")  # zero dates allowed
        cur.execute(MY_DDL)
        rng = random.Random(1)
        for i in range(1, ROWS + 1):
            r = _row(rng, i)
            seen = r["seen_at"]
            cur.execute(
                "INSERT INTO items VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                "%s,%s,%s,%s,%s)",
                (
                    i, r["title"], r["body"], r["qty"], r["small"], r["amount"], r["big"],
                    r["active"], r["due"],
                    None if seen is None else seen.replace(tzinfo=None),
                    None if seen is None else seen.replace(tzinfo=None, year=2024),
                    None if r["doc"] is None else json.dumps(r["doc"], ensure_ascii=False),
                    r["score"], r["ratio"], r["raw"], b"ab" if i % 2 else None,
                    i % 32, "abc"[i % 3], "x,z" if i % 2 else "", r["t"],
                    "0000-00-00" if i % 4 == 0 else None if i % 4 == 1 else "2024-02-29",
                ),
            )  # fmt: skip
        cur.execute("SHOW MASTER STATUS")
        file, pos = cur.fetchone()[:2]
    _changes(conn, changes, shape, random.Random(2), "my")
    conn.close()
    return f"mysql://root@{host}:{port}/capcost", file, int(pos)


def _changes(conn: Any, changes: int, shape: str, rng: random.Random, side: str) -> None:
    per_txn = 1 if shape == "autocommit" else 1_000
    sql = (
        "UPDATE items SET qty = %s, title = %s, amount = %s, active = %s WHERE id = %s"
        if side == "pg"
        else "UPDATE items SET qty = %s, title = %s, amount = %s, active = %s, "
        "seen_at = seen_at WHERE id = %s"
    )
    done = 0
    while done < changes:
        n = min(per_txn, changes - done)
        params = [
            (
                rng.randint(0, 10**6),
                f"{rng.choice(WORDS)} {done + k}",
                Decimal(rng.randint(0, 10**8)) / 100,
                rng.random() < 0.5,
                (done + k) % ROWS + 1,
            )
            for k in range(n)
        ]
        if n == 1:
            with conn.cursor() as cur:
                cur.execute(sql, params[0])
        elif side == "pg":
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, params)
        else:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.executemany(sql, params)
                cur.execute("COMMIT")
        done += n


# -- the child (one code version) -------------------------------------------------------------


def _digest(changes: Any) -> str:
    h = hashlib.sha256()
    for c in changes:
        h.update(
            repr(
                (
                    c.op, c.table, c.key, c.before, c.after, c.changed_fields,
                    c.position, c.commit_ts, c.origin,
                )
            ).encode()
        )  # fmt: skip
    return h.hexdigest()[:16]


PROFILE = os.environ.get("CAPTURE_COST_PROFILE") == "1"


def _in_thread(stream: Any) -> Any:
    """With --profile, the reader thread's own profile (the main thread only waits)."""
    if not PROFILE:
        return None
    import cProfile

    profiler = cProfile.Profile()
    main = stream._main
    stream._main = lambda: profiler.runcall(main)
    return profiler


def _print_profile(profiler: Any) -> None:
    if profiler is not None:
        import pstats

        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)


def _timed(fn: Any, threaded: bool = False) -> tuple[Any, float, float]:
    if PROFILE and not threaded:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        out = profiler.runcall(fn)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(20)
        return out, 0.0, 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def child(code: str, spec: dict[str, Any]) -> None:
    sys.path.insert(0, code)
    import syncswim_lib

    assert syncswim_lib.__file__ is not None and syncswim_lib.__file__.startswith(code), (
        syncswim_lib.__file__
    )
    reader, n = spec["reader"], spec["changes"]
    result: dict[str, Any] = {"reader": reader}
    if reader.startswith("pg"):
        import psycopg

        from syncswim_lib.connectors.postgres import capture
        from syncswim_lib.connectors.postgres.describe import describe_table

        conn = psycopg.connect(spec["pg_dsn"], autocommit=True)

        def describe(name: str) -> Any:
            return describe_table(conn, name, "bench")

        slot = f"syncswim_{SYNC}"
        if reader == "pg_decode":
            messages = pickle.loads(Path(spec["messages"]).read_bytes())
            plans: dict[Any, Any] = {}

            def resolve(relation: Any) -> Any:
                key = (relation, True)
                if key not in plans:
                    info = describe(relation.qualified_name)
                    plans[key] = capture.plan_for(relation, info)
                return plans[key]

            def run() -> Any:
                return capture.assemble(messages, None, ["public.items"], 10**9, resolve)[0]

            run()  # described once, as a long-lived capture would have
            # the least of 3 runs: decoding alone is short, and the machine is shared
            batch, cpu, wall = min((_timed(run) for _ in range(3)), key=lambda t: t[1])
        elif reader == "pg_peek":
            cache: dict[Any, Any] = {}

            def run() -> Any:
                return capture.capture_changes(
                    conn, slot, ["public.items"], None, 10**9, describe, "bench", cache
                )

            batch, cpu, wall = _timed(run)
        else:
            from syncswim_lib.connectors.postgres.replication import ReplicationStream

            stream = ReplicationStream(spec["pg_dsn"], "bench", SYNC, ["public.items"], None)
            profiler = _in_thread(stream)

            def run() -> Any:
                stream.start()
                deadline = time.monotonic() + 300
                while stream.buffer.changes() < n and time.monotonic() < deadline:
                    stream.buffer.wait(0.05)
                    time.sleep(0.01)
                return stream.buffer.take({"public.items"}, None, 10**9, None)

            batch, cpu, wall = _timed(run, threaded=True)
            stream.close()
            _print_profile(profiler)
        conn.close()
    else:
        from syncswim_lib.connectors.mysql.capture import TransactionAssembler, read_binlog
        from syncswim_lib.connectors.mysql.connection import connect, parse_dsn
        from syncswim_lib.connectors.mysql.describe import describe_table as my_describe
        from syncswim_lib.envelope import BinlogPosition

        dsn = parse_dsn(spec["my_dsn"], "bench")
        start = BinlogPosition(spec["file"], spec["pos"])
        db = connect(dsn, "bench")

        def my_desc(schema: str, table: str) -> Any:
            return my_describe(db, schema, table, name=f"{schema}.{table}", endpoint="bench")

        if reader == "my_batch":

            def run() -> Any:
                asm = TransactionAssembler(
                    marker=("capcost", "_syncswim_applied"),
                    wanted={("capcost", "items")},
                    describe=my_desc,
                    start=start,
                    since=start,
                )
                return read_binlog(dsn, 4_000_001, asm, 10**9, "bench")

            batch, cpu, wall = _timed(run)
        else:
            from syncswim_lib.connectors.mysql.connector import MySQLConnector
            from syncswim_lib.connectors.mysql.stream import BinlogStream

            stream = BinlogStream(MySQLConnector(spec["my_dsn"], "bench"), SYNC, ["items"], start)
            profiler = _in_thread(stream)

            def run() -> Any:
                stream.start()
                deadline = time.monotonic() + 300
                while stream.buffer.changes() < n and time.monotonic() < deadline:
                    stream.buffer.wait(0.05)
                    time.sleep(0.01)
                return stream.buffer.take({"capcost.items", "items"}, start, 10**9, None)

            batch, cpu, wall = _timed(run, threaded=True)
            stream.close()
            _print_profile(profiler)
        db.close()
    got = len(batch.changes)
    result.update(
        changes=got,
        cpu_us=cpu / max(got, 1) * 1e6,
        wall_us=wall / max(got, 1) * 1e6,
        digest=_digest(batch.changes),
    )
    print(json.dumps(result))


# -- the parent -----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shape", choices=("autocommit", "transactions"), default="autocommit")
    ap.add_argument("--baseline", help="git revision to compare against (interleaved)")
    ap.add_argument("--only", help=f"comma-separated readers of {', '.join(READERS)}")
    ap.add_argument("--json", type=Path, help="write the samples here")
    ap.add_argument("--save-messages", type=Path, help="keep the peeked pgoutput messages (pickle)")
    ap.add_argument(
        "--profile", action="store_true", help="each reader of this checkout once, cProfile"
    )
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], json.loads(a.child[1]))
        return
    readers = a.only.split(",") if a.only else list(READERS)
    unknown = set(readers) - set(READERS)
    if unknown:
        ap.error(f"unknown readers: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(REPO))
    from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="capture_cost_"))
    versions = {"this": str(REPO)}
    if a.baseline:
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", a.baseline], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        versions = {"baseline": str(base), "this": str(REPO)}
    pg, my = PostgresServer(tmp / "pg"), MariaDBServer(tmp / "my")
    samples: list[dict[str, Any]] = []
    try:
        pg.start()
        my.start()
        print(
            f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; {a.changes:,} changes "
            f"({a.shape}), baseline {a.baseline or '-'}",
            flush=True,
        )
        spec: dict[str, Any] = {"changes": a.changes}
        if any(r.startswith("pg") for r in readers):
            messages = setup_pg(pg.dsn, a.changes, a.shape)
            path = tmp / "messages.pickle"
            path.write_bytes(pickle.dumps(messages))
            if a.save_messages:
                a.save_messages.write_bytes(path.read_bytes())
            spec.update(pg_dsn=pg.dsn, messages=str(path))
        if any(r.startswith("my") for r in readers):
            my_dsn, file, pos = setup_my(my.dsn, a.changes, a.shape)
            spec.update(my_dsn=my_dsn, file=file, pos=pos)
        if a.profile:
            for reader in readers:
                args = json.dumps({**spec, "reader": reader})
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(REPO), args],
                    capture_output=True, text=True, cwd=str(REPO),
                    env={**os.environ, "CAPTURE_COST_PROFILE": "1"},
                )  # fmt: skip
                print(f"--- {reader}\n{out.stderr}", flush=True)
            return
        for rep in range(a.reps):
            for reader in readers:
                order = list(versions.items())
                for version, code in order[::-1] if rep % 2 else order:
                    out = subprocess.run(
                        [
                            sys.executable, __file__, "--child", code,
                            json.dumps({**spec, "reader": reader}),
                        ],
                        capture_output=True, text=True, cwd=code,
                    )  # fmt: skip
                    if out.returncode != 0:
                        print(out.stdout, out.stderr, file=sys.stderr)
                        raise SystemExit(f"{reader} ({version}) failed")
                    sample = json.loads(out.stdout.strip().splitlines()[-1])
                    sample.update(version=version, rep=rep, load=os.getloadavg()[0])
                    samples.append(sample)
                    print(
                        f"  rep {rep + 1} {reader:9} {version:8} {sample['changes']:>7,} "
                        f"changes  cpu {sample['cpu_us']:7.1f} µs  wall {sample['wall_us']:7.1f}"
                        f" µs a change  digest {sample['digest']}  load {sample['load']:.2f}",
                        flush=True,
                    )
    finally:
        pg.stop()
        my.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedians of {a.reps}, client CPU per change (µs):")
    print(f"| reader | {' | '.join(versions)} |" + (" ratio |" if len(versions) > 1 else ""))
    print("|---" * (len(versions) + 1 + (len(versions) > 1)) + "|")
    agree = True
    for reader in readers:
        cells, meds = [], []
        for version in versions:
            mine = [s for s in samples if s["reader"] == reader and s["version"] == version]
            med = statistics.median(s["cpu_us"] for s in mine)
            meds.append(med)
            cells.append(f"{med:.1f}")
        digests = {s["digest"] for s in samples if s["reader"] == reader}
        counts = {s["changes"] for s in samples if s["reader"] == reader}
        agree = agree and len(digests) == 1 and counts == {a.changes}
        ratio = f" {meds[0] / meds[-1]:.2f}x |" if len(meds) > 1 else ""
        print(f"| {reader} | {' | '.join(cells)} |{ratio}")
    print(
        "changes identical across versions and repetitions"
        if agree
        else "CHANGES DIFFER between versions or repetitions (or a count is short)"
    )
    if a.json:
        a.json.write_text(json.dumps({"args": vars(a) | {"json": None}, "samples": samples}))
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
