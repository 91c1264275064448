"""Throughput of the data path: initial sync, no-op run, `full` of equal tables, sustained changes.

Starts a private PostgreSQL and MariaDB (the sandbox servers) on free ports in a temporary
folder. The table has 10 columns of mixed types (bigint key, varchar, text, int,
numeric(12,2), boolean, date, timestamp, JSON, double; MariaDB's equivalents), its rows
generated deterministically. SOR mode: the full side is the system of record, the empty
side carries the external-id column `src_id`. For each repetition and each direction
(PostgreSQL full -> MariaDB empty, and the reverse), interleaved, each contender gets fresh
databases and runs in a child process of its own:

- ours: `run_sync(rt, sync, full=True)` (what `syncswim sync --full` runs) timed in the
  child after `syncswim setup`'s work; peak RSS from getrusage; then, on the same tables,
  a plain run with nothing to write (the no-op run), a `full` run of the two equal tables,
  and sustained changes on the full side (single-row autocommit updates, updates in
  transactions, inserts) committed by a writer process while plain runs loop, timed from
  the first commit until the other side shows the last change; and the lag at an offered
  rate: a paced writer for `--lag-seconds` at `--lag-rate`, its clock in a probe row;
- raw: the hand-written limit, read with the driver and bulk-loaded (PostgreSQL -> MariaDB:
  a file written from the rows read, then LOAD DATA LOCAL INFILE; MariaDB -> PostgreSQL:
  COPY FROM STDIN fed with the rows read);
- dlt, default and pyarrow backends, when it installs into a virtual environment of its own
  under the temporary folder (never the project's).

After every step the two tables are compared row by row through the mapping (every column,
exact for decimals, timestamps and JSON); the command exits non-zero if a copy differs.
Everything started is stopped on exit, Ctrl-C and errors.

    .venv/bin/python bench/throughput.py [--rows 100000] [--changes 20000] [--reps 3]
        [--lag-seconds 60] [--lag-rate 500] [--json out.json] [--quick] [--no-dlt]
        [--profile] [--max-seconds 10800]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    import pymysql

# Only the standard library at module level: the dlt child runs this file with the
# interpreter of dlt's own virtual environment, where the project is not installed.
REPO = Path(__file__).resolve().parents[1]

TABLE = "items"
FIELDS = ("title", "body", "qty", "amount", "active", "due", "seen_at", "doc", "score")
PG_TYPES = (
    "varchar(100)",
    "text",
    "integer",
    "numeric(12,2)",
    "boolean",
    "date",
    "timestamptz",
    "jsonb",
    "double precision",
)
MY_TYPES = (
    "varchar(100)",
    "text",
    "int",
    "decimal(12,2)",
    "tinyint(1)",
    "date",
    "datetime(6)",
    "json",
    "double",
)
EXT = "src_id"
TARGET_KEYS_FROM = 50_000_000  # the empty side's own keys start far from the source's
DIRECTIONS = ("pg_to_my", "my_to_pg")
LABEL = {"pg_to_my": "PostgreSQL → MariaDB", "my_to_pg": "MariaDB → PostgreSQL"}
SOURCE = {"pg_to_my": "pg", "my_to_pg": "my"}
SHAPES = ("autocommit", "transactions", "inserts")
CONTENDERS = ("ours", "raw", "dlt", "dlt_arrow")
NAMES = {
    "ours": "syncswim sync --full",
    "raw": "raw: driver read + bulk load",
    "dlt": "dlt, default backend",
    "dlt_arrow": "dlt, pyarrow backend",
}
RAW_NAMES = {
    "pg_to_my": "raw: psycopg read + LOAD DATA LOCAL",
    "my_to_pg": "raw: PyMySQL read + COPY FROM STDIN",
}
SEED = 20_240_601
TOP = int(os.environ.get("THROUGHPUT_PROFILE_TOP", "15"))  # lines of a --profile listing
WORDS = (
    "alpha",
    "bravo",
    "naïve",
    "Größe",
    "東京",
    "café",
    "zebra",
    "😀 smile",
    "quote's",
    'say "hi"',
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "",
)

YAML = """
endpoints:
  pg: {{kind: postgres, dsn: {{env: TP_PG_DSN}}}}
  my: {{kind: mysql, dsn: {{env: TP_MY_DSN}}}}
syncs:
  {sync}:
    between: [pg, my]
    run: micro_batch
    batch_size: {batch}
    entities:
      items:
        pg: {{table: public.items, key: [id]}}
        my: {{table: items, key: [id]}}
        mode: {{system_of_record: {sor}, external_id: {{{other}: {ext}}}}}
        fields: {{{fields}}}
"""


class OutOfTime(Exception):
    pass


# --- the data -------------------------------------------------------------------------------


def gen_rows(n: int, first_id: int = 1, seed: int = SEED) -> Iterator[tuple[Any, ...]]:
    """`n` rows (id, then FIELDS), the same for the same arguments; some values NULL."""
    rnd = random.Random(seed)
    t0 = datetime(2015, 1, 1, tzinfo=UTC)
    for i in range(first_id, first_id + n):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(0, 12))]
        doc: Any = {
            "id": i,
            "tags": [rnd.choice(WORDS) for _ in range(rnd.randint(0, 3))],
            "price": round(rnd.uniform(0, 1000), 2),
            "ok": rnd.random() < 0.5,
            "nested": {"n": rnd.randint(-(10**9), 10**9), "none": None},
        }
        yield (
            i,
            f"item {i} {rnd.choice(WORDS)}"[:100],
            None if i % 11 == 0 else " ".join(words),
            None if i % 13 == 0 else rnd.randint(-(2**31), 2**31 - 1),
            Decimal(rnd.randint(-(10**11) + 1, 10**11 - 1)).scaleb(-2),
            None if i % 7 == 0 else rnd.random() < 0.5,
            date(1990, 1, 1) + timedelta(days=rnd.randint(0, 20_000)),
            None if i % 17 == 0 else t0 + timedelta(microseconds=rnd.randint(0, 10**15)),
            None if i % 9 == 0 else doc,
            None if i % 19 == 0 else rnd.uniform(-1e6, 1e6),
        )


_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_value(v: Any) -> str:
    """One field in the text format both COPY and LOAD DATA read (backslash escapes, \\N)."""
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, str):
        return v.translate(_ESC)
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False).translate(_ESC)
    return str(v)  # int, Decimal, date


def tsv_line(row: Sequence[Any]) -> str:
    return "\t".join(tsv_value(v) for v in row) + "\n"


def write_tsv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in gen_rows(rows):
            f.write(tsv_line(row))


# --- connections and schema ---------------------------------------------------------------


def my_connect(dsn: str, **kw: Any) -> pymysql.connections.Connection:
    from urllib.parse import urlsplit

    import pymysql

    u = urlsplit(dsn)
    return pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username or "root",
        database=u.path.strip("/") or None,
        autocommit=True,
        charset="utf8mb4",
        init_command="SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES'",
        **kw,
    )


def pg_connect(dsn: str) -> psycopg.Connection[Any]:
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def my_exec(my: pymysql.connections.Connection, sql: str, args: Any = None) -> list[Any]:
    with my.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def pg_ddl(with_ext: bool) -> str:
    start = f" (START WITH {TARGET_KEYS_FROM})" if with_ext else ""
    cols = [f"id bigint GENERATED BY DEFAULT AS IDENTITY{start} PRIMARY KEY"]
    cols += [f"{f} {t}" for f, t in zip(FIELDS, PG_TYPES, strict=True)]
    if with_ext:
        cols.append(f"{EXT} bigint UNIQUE")
    return f"CREATE TABLE {TABLE} ({', '.join(cols)})"


def my_ddl(with_ext: bool) -> str:
    cols = ["id bigint AUTO_INCREMENT PRIMARY KEY"]
    cols += [f"{f} {t}" for f, t in zip(FIELDS, MY_TYPES, strict=True)]
    if with_ext:
        cols.append(f"{EXT} bigint NULL UNIQUE")
    start = f" AUTO_INCREMENT = {TARGET_KEYS_FROM}" if with_ext else ""
    return f"CREATE TABLE {TABLE} ({', '.join(cols)}){start}"


def load_pg(pg: psycopg.Connection[Any], path: Path, columns: Sequence[str]) -> None:
    sql = f"COPY {TABLE} ({', '.join(columns)}) FROM STDIN"
    with pg.cursor() as cur, cur.copy(sql) as cp, open(path, "rb") as f:
        while block := f.read(1 << 20):
            cp.write(block)


def load_my(my: pymysql.connections.Connection, path: Path, columns: Sequence[str]) -> None:
    with my.cursor() as cur:
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {TABLE} CHARACTER SET utf8mb4"
            f" ({', '.join(columns)})",
            (str(path),),
        )
        cur.execute("SHOW WARNINGS")
        warnings = cur.fetchall()
    if warnings:
        raise RuntimeError(f"LOAD DATA warned: {warnings[:3]}")


# --- comparing the two copies --------------------------------------------------------------


def _canon(value: Any) -> str:
    """A value as exact text with its type: 1.50 is not 1.5, true is not 1."""
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{type(value).__name__}:{value!r}"


_ACTIVE, _DOC = FIELDS.index("active"), FIELDS.index("doc")


def _canon_doc(value: Any) -> str | None:
    return None if value is None else "json:" + json.dumps(value, sort_keys=True)


def _canon_pg(row: Sequence[Any]) -> tuple[str | None, ...]:
    out: list[str | None] = [_canon(v) for v in row]
    out[_DOC] = _canon_doc(row[_DOC])
    return tuple(out)


def _canon_my(row: Sequence[Any]) -> tuple[str | None, ...]:
    values = list(row)
    if values[_ACTIVE] in (0, 1):
        values[_ACTIVE] = bool(values[_ACTIVE])
    out: list[str | None] = [_canon(v) for v in values]
    doc = row[_DOC]
    out[_DOC] = _canon_doc(json.loads(doc) if isinstance(doc, str | bytes) else doc)
    return tuple(out)


def _pages(fetch: Callable[[int], list[Any]]) -> Iterator[Any]:
    last = -(2**63)
    while rows := fetch(last):
        yield from rows
        last = rows[-1][0]


def compare(pg: psycopg.Connection[Any], my: pymysql.connections.Connection, sor: str) -> str:
    """'' when the empty side holds exactly the full side's rows (matched by the external
    id, every mapped column equal); else what differs (the first few)."""
    cols = ", ".join(FIELDS)
    page = 5000
    if sor == "pg":
        src_rows = _pages(
            lambda last: pg.execute(
                f"SELECT id, {cols} FROM {TABLE} WHERE id > %s ORDER BY id LIMIT %s", (last, page)
            ).fetchall()
        )
        dst_rows = _pages(
            lambda last: my_exec(
                my,
                f"SELECT {EXT}, {cols} FROM {TABLE} WHERE {EXT} > %s ORDER BY {EXT} LIMIT %s",
                (last, page),
            )
        )
        canon_src, canon_dst = _canon_pg, _canon_my
        unlinked = my_exec(my, f"SELECT COUNT(*) FROM {TABLE} WHERE {EXT} IS NULL")[0][0]
    else:
        src_rows = _pages(
            lambda last: my_exec(
                my,
                f"SELECT id, {cols} FROM {TABLE} WHERE id > %s ORDER BY id LIMIT %s",
                (last, page),
            )
        )
        dst_rows = _pages(
            lambda last: pg.execute(
                f"SELECT {EXT}, {cols} FROM {TABLE} WHERE {EXT} > %s ORDER BY {EXT} LIMIT %s",
                (last, page),
            ).fetchall()
        )
        canon_src, canon_dst = _canon_my, _canon_pg
        row = pg.execute(f"SELECT count(*) FROM {TABLE} WHERE {EXT} IS NULL").fetchone()
        unlinked = row[0] if row else 0
    problems: list[str] = []
    if unlinked:
        problems.append(f"{unlinked} rows of the empty side have no {EXT}")
    missing = extra = differ = 0
    s, d = next(src_rows, None), next(dst_rows, None)
    while s is not None or d is not None:
        if d is None or (s is not None and s[0] < d[0]):
            missing += 1
            if missing <= 3:
                problems.append(f"key {s[0]} missing on the other side")  # type: ignore[index]
            s = next(src_rows, None)
        elif s is None or d[0] < s[0]:
            extra += 1
            if extra <= 3:
                problems.append(f"{EXT} {d[0]} has no source row")
            d = next(dst_rows, None)
        else:
            a, b = canon_src(s[1:]), canon_dst(d[1:])
            if a != b:
                differ += 1
                if differ <= 3:
                    diffs = [
                        f"{f}: {x} != {y}" for f, x, y in zip(FIELDS, a, b, strict=True) if x != y
                    ]
                    problems.append(f"key {s[0]}: " + "; ".join(diffs))
            s, d = next(src_rows, None), next(dst_rows, None)
    if missing or extra or differ:
        problems.append(f"{missing} missing, {extra} extra, {differ} different")
    return " | ".join(p if len(p) <= 600 else p[:600] + " ..." for p in problems)


# --- child: our sync --------------------------------------------------------------------------


def _emit(path: str, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_ours(spec: dict[str, Any]) -> None:
    sys.path.insert(0, str(REPO))
    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.capture import ensure_setup
    from syncswim_lib.pipeline.report import EntityReport
    from syncswim_lib.pipeline.run import run_sync
    from syncswim_lib.pipeline.runtime import Runtime

    os.environ["TP_PG_DSN"], os.environ["TP_MY_DSN"] = spec["pg"], spec["my"]
    project = load_project(spec["yaml"])
    sync, sor, out, deadline = spec["sync"], spec["sor"], spec["out"], spec["deadline"]
    pg, my = pg_connect(spec["pg"]), my_connect(spec["my"])
    tag = f"  {spec['tag']}"

    def run(full: bool = False) -> list[EntityReport]:
        with Runtime(project, state_url=spec["state"]) as rt:
            return run_sync(rt, sync, full=full)

    def check(record: dict[str, Any]) -> None:
        detail = compare(pg, my, sor)
        record["identical"] = not detail
        if detail:
            record["detail"] = detail
        _emit(out, record)
        what = "identical" if not detail else f"DIFFERENT: {detail}"
        print(f"{tag} {record['step']}: {_describe(record)}; {what}", flush=True)

    with Runtime(project, state_url=spec["state"]) as rt:
        t = time.monotonic()
        ensure_setup(rt, sync)  # `syncswim setup`: slot, publication, markers, positions
        setup_s = time.monotonic() - t
    rss_before = _rss_mib()
    if spec.get("profile"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        shape = spec.get("profile_changes")
        if shape:
            # the changes all committed first, then the runs that apply them profiled: the
            # pipeline's cost per change, without the writer competing for the CPU
            run(True)
            _write_all(spec, shape)
            t = time.monotonic()
            reports = []
            while not reports or sum(r.writes for r in reports[-1:]):
                reports.append(prof.runcall(run)[0])
            took = time.monotonic() - t
            record = {"step": f"changes_{shape}", "seconds": took, **_counts(reports)}
            record.update(changes=spec["changes"], rate=spec["changes"] / took, runs=1)
        else:
            t = time.monotonic()
            reports = prof.runcall(run, True)
            took = time.monotonic() - t
            record = {"step": "initial", "seconds": took, "rows": spec["rows"]}
            record.update(_counts(reports))
        prof.dump_stats(spec["profile"])
        check({**record, "rss_mib": _rss_mib(), "profiled": True})
        for key in ("cumulative", "tottime"):
            what = "cumulative time" if key == "cumulative" else "own time"
            print(f"\n{tag} top 15 by {what} (cProfile; {took:.1f} s under the profiler):")
            pstats.Stats(spec["profile"], stream=sys.stdout).sort_stats(key).print_stats(TOP)
        return

    t = time.monotonic()
    reports = run(full=True)
    took = time.monotonic() - t
    record = {"step": "initial", "seconds": took, "rows": spec["rows"], **_counts(reports)}
    record.update(rss_mib=_rss_mib(), rss_before_mib=rss_before, setup_seconds=setup_s)
    check(record)

    t = time.monotonic()
    reports = run()
    check({"step": "noop", "seconds": time.monotonic() - t, **_counts(reports)})

    t = time.monotonic()
    reports = run(full=True)
    check({"step": "full_equal", "seconds": time.monotonic() - t, **_counts(reports)})
    run()  # takes in the echoes of whatever that run wrote, untimed

    for shape in spec["shapes"]:
        if time.monotonic() > deadline:
            raise OutOfTime(f"before {shape}")
        t = time.monotonic()
        try:
            record = _sustained(spec, shape, run, pg, my)
        except OutOfTime as e:  # the copies are compared all the same
            record = {"step": f"sustained_{shape}", "seconds": time.monotonic() - t}
            record["gave_up"] = str(e)
        check(record)
        drained = run()  # the echoes of the last runs' writes, untimed
        if sum(r.writes for r in drained):
            print(f"{tag} {shape}: the run after wrote {sum(r.writes for r in drained)} rows")
    if spec.get("lag_seconds"):
        t = time.monotonic()
        try:
            record = _lag(spec, run, pg, my)
        except OutOfTime as e:
            record = {"step": "lag", "seconds": time.monotonic() - t, "gave_up": str(e)}
        check(record)
        run()
    check({"step": "final", "seconds": 0.0, "rss_all_steps_mib": _rss_mib()})


def _counts(reports: Sequence[Any]) -> dict[str, int]:
    return {
        "writes": sum(r.writes for r in reports),
        "captured": sum(r.captured for r in reports),
        "failed": sum(r.failed for r in reports),
    }


def _describe(r: dict[str, Any]) -> str:
    parts = [f"{r['seconds']:.2f} s"]
    if r.get("rows"):
        parts.append(f"{r['rows'] / r['seconds']:,.0f} rows/s")
    if r.get("changes") and "rate" in r:
        parts.append(f"{r['rate']:,.0f} changes/s in {r['runs']} runs")
    if r.get("step") == "lag" and r.get("samples"):
        parts.append(
            f"{r['offered_rate']:,.0f} changes/s offered, lag p50 {r['lag_p50']:.2f} s,"
            f" max {r['lag_max']:.2f} s, slope {r['lag_slope'] or 0:.3f}"
            f" ({'bounded' if r['bounded'] else 'GROWING'}) in {r['runs']} runs"
        )
    if "writes" in r and "captured" in r:
        parts.append(f"wrote {r['writes']}, captured {r['captured']}")
    if r.get("failed"):
        parts.append(f"FAILED {r['failed']}")
    if r.get("gave_up"):
        parts.append(f"GAVE UP: {r['gave_up']}")
    if "rss_mib" in r:
        parts.append(f"peak RSS {r['rss_mib']:.0f} MiB")
    return ", ".join(parts)


def _sustained(
    spec: dict[str, Any],
    shape: str,
    run: Callable[[], Sequence[Any]],
    pg: psycopg.Connection[Any],
    my: pymysql.connections.Connection,
) -> dict[str, Any]:
    """A writer process commits the changes on the full side while plain runs loop here (a
    fresh Runtime each, as every sensor-started run opens one, without the sensor's wait);
    timed from the writer's first commit until the other side shows its last change."""
    src = spec["my"] if spec["sor"] == "my" else spec["pg"]
    wspec = {
        "kind": spec["sor"],
        "dsn": src,
        "shape": shape,
        "changes": spec["changes"],
        "tx_size": spec["tx_size"],
        "rows": spec["rows"],
        "offset": SHAPES.index(shape) * spec["changes"],
    }
    with open(Path(spec["out"]).with_suffix(f".{shape}.err"), "w") as err:
        writer = subprocess.Popen(
            [sys.executable, __file__, "--child", "writer", json.dumps(wspec)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    done: dict[str, Any] | None = None
    runs = writes = captured = failed = 0
    # a safety net, not a target: 20 changes/s at the least, or the step gives up
    give_up = min(spec["deadline"], time.monotonic() + 60 + spec["changes"] / 20)
    try:
        while True:
            if time.monotonic() > give_up:
                raise OutOfTime(f"{shape}: the last change not visible after {runs} runs")
            reports = run()
            runs += 1
            writes += sum(r.writes for r in reports)
            captured += sum(r.captured for r in reports)
            failed += sum(r.failed for r in reports)
            if done is None and writer.poll() is not None:
                text = writer.stdout.read() if writer.stdout else ""
                if writer.returncode != 0 or not text.strip():
                    raise RuntimeError(f"the {shape} writer failed (exit {writer.returncode})")
                done = json.loads(text)
            if done is not None and _visible(spec["sor"], done, pg, my):
                end = time.monotonic()
                break
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    took = end - done["first"]
    return {
        "step": f"sustained_{shape}",
        "seconds": took,
        "changes": spec["changes"],
        "rate": spec["changes"] / took,
        "offered_rate": spec["changes"] / max(done["last"] - done["first"], 1e-9),
        "lag_after_last_commit": end - done["last"],
        "runs": runs,
        "writes": writes,
        "captured": captured,
        "failed": failed,
    }


def _write_all(spec: dict[str, Any], shape: str) -> None:
    """The writer of `shape`, run to its end."""
    src = spec["my"] if spec["sor"] == "my" else spec["pg"]
    wspec = {
        "kind": spec["sor"],
        "dsn": src,
        "shape": shape,
        "changes": spec["changes"],
        "tx_size": spec["tx_size"],
        "rows": spec["rows"],
        "offset": 0,
    }
    cmd = [sys.executable, __file__, "--child", "writer", json.dumps(wspec)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _visible(
    sor: str, done: dict[str, Any], pg: psycopg.Connection[Any], my: pymysql.connections.Connection
) -> bool:
    q = f"SELECT title FROM {TABLE} WHERE {EXT} = %s"
    if sor == "pg":
        rows = my_exec(my, q, (done["last_key"],))
    else:
        rows = pg.execute(q, (done["last_key"],)).fetchall()
    return bool(rows) and rows[0][0] == done["title"]


PROBE_EVERY = 0.25  # seconds between two commits of the probe row's clock


def _lag(
    spec: dict[str, Any],
    run: Callable[[], Sequence[Any]],
    pg: psycopg.Connection[Any],
    my: pymysql.connections.Connection,
) -> dict[str, Any]:
    """Lag at an offered rate: a writer commits single-row updates in autocommit at
    `lag_rate` per second for `lag_seconds`, and every PROBE_EVERY seconds writes its clock
    (CLOCK_MONOTONIC, one clock for every process of the machine) into the probe row, in
    line with the other changes. Plain runs loop here; after each, the probe row's clock
    as the other side shows it gives the lag: how old the newest change visible there is.
    Bounded means the lag does not grow: the slope of lag over time stays under 0.05 s
    per second (3 s a minute)."""
    src = spec["my"] if spec["sor"] == "my" else spec["pg"]
    wspec = {
        "kind": spec["sor"],
        "dsn": src,
        "rate": spec["lag_rate"],
        "seconds": spec["lag_seconds"],
        "rows": spec["rows"],
    }
    with open(Path(spec["out"]).with_suffix(".lag.err"), "w") as err:
        writer = subprocess.Popen(
            [sys.executable, __file__, "--child", "paced", json.dumps(wspec)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    samples: list[tuple[float, float]] = []
    runs = writes = 0
    started = time.monotonic()
    give_up = min(spec["deadline"], started + spec["lag_seconds"] * 3 + 60)
    done: dict[str, Any] | None = None
    try:
        while True:
            if time.monotonic() > give_up:
                raise OutOfTime(f"lag: the writer's last probe not visible after {runs} runs")
            reports = run()
            runs += 1
            writes += sum(r.writes for r in reports)
            shown = _probe(spec["sor"], pg, my)
            now = time.monotonic()
            if shown is not None and done is None:
                samples.append((now, now - shown))
            if done is None and writer.poll() is not None:
                text = writer.stdout.read() if writer.stdout else ""
                if writer.returncode != 0 or not text.strip():
                    raise RuntimeError(f"the paced writer failed (exit {writer.returncode})")
                done = json.loads(text)
            if done is not None and shown is not None and shown >= done["last_probe"]:
                break
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    # a run writes a record's current row: the probe can show a commit the run did not
    # capture yet for the other rows (they come with the next run), so the lag is exact to
    # about one run; the copies are compared once that tail is in
    for _ in range(10):
        if not sum(r.writes for r in run()):
            break
    lags = sorted(lag for _, lag in samples)
    slope = _slope(samples)
    return {
        "step": "lag",
        "seconds": time.monotonic() - started,
        "offered_rate": done["changes"] / max(done["last"] - done["first"], 1e-9),
        "changes": done["changes"],
        "lag_p50": lags[len(lags) // 2] if lags else None,
        "lag_max": lags[-1] if lags else None,
        "lag_slope": slope,
        "bounded": slope is not None and slope < 0.05,
        "samples": len(samples),
        "runs": runs,
        "writes": writes,
    }


def _slope(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of lag over time."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my_ = sum(lag for _, lag in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mx) * (lag - my_) for t, lag in samples) / var


def _probe(
    sor: str, pg: psycopg.Connection[Any], my: pymysql.connections.Connection
) -> float | None:
    """The writer's clock in the probe row (source key 1) as the other side shows it."""
    q = f"SELECT title FROM {TABLE} WHERE {EXT} = 1"
    rows = my_exec(my, q) if sor == "pg" else pg.execute(q).fetchall()
    if not rows or not rows[0][0] or not str(rows[0][0]).startswith("probe "):
        return None
    return float(str(rows[0][0]).split(" ", 1)[1])


def child_paced(spec: dict[str, Any]) -> None:
    """Single-row autocommit updates at `rate` per second for `seconds` (rows 2.., round
    robin), and the probe row (key 1) every PROBE_EVERY seconds."""
    rate, seconds, rows = float(spec["rate"]), float(spec["seconds"]), int(spec["rows"])
    sql = f"UPDATE {TABLE} SET title = %s, qty = %s WHERE id = %s"
    if spec["kind"] == "pg":
        conn: Any = pg_connect(spec["dsn"])
        cur = conn.cursor()
    else:
        conn = my_connect(spec["dsn"])
        cur = conn.cursor()
    first = time.monotonic()
    next_probe = first
    i = 0
    last_probe = first
    while True:
        now = time.monotonic()
        if now - first >= seconds:
            break
        if now >= next_probe:
            last_probe = round(time.monotonic(), 6)  # as the probe row holds it
            cur.execute(sql, (f"probe {last_probe:.6f}", i, 1))
            next_probe += PROBE_EVERY
        due = first + i / rate
        if due > now:
            time.sleep(min(due - now, max(0.0, next_probe - now)))  # pacing a writer
            continue
        cur.execute(sql, (f"paced {i}", i, i % max(1, rows - 1) + 2))
        i += 1
    last_probe = round(time.monotonic(), 6)
    cur.execute(sql, (f"probe {last_probe:.6f}", i, 1))
    last = time.monotonic()
    conn.close()
    print(json.dumps({"first": first, "last": last, "changes": i, "last_probe": last_probe}))


# --- child: the writer of sustained changes -------------------------------------------------


def child_writer(spec: dict[str, Any]) -> None:
    kind, shape, n, rows = spec["kind"], spec["shape"], spec["changes"], spec["rows"]
    tx_size = 1 if shape == "autocommit" else spec["tx_size"]
    stamp = datetime(2030, 1, 1, tzinfo=UTC)
    ph = "%s"
    if shape == "inserts":
        cols = ", ".join(FIELDS)
        sql = f"INSERT INTO {TABLE} ({cols}) VALUES ({', '.join([ph] * len(FIELDS))})"
        params = [list(r[1:]) for r in gen_rows(n, rows + 1 + spec["offset"], SEED + 1)]
        for i, p in enumerate(params):
            p[0] = f"{shape} {i}"
    else:
        sql = f"UPDATE {TABLE} SET title = %s, amount = %s, seen_at = %s WHERE id = %s"
        params = [
            [
                f"{shape} {i}",
                Decimal(i).scaleb(-2),
                stamp + timedelta(microseconds=i),
                (spec["offset"] + i) % rows + 1,
            ]
            for i in range(n)
        ]
    first: float | None = None
    if kind == "pg":
        from psycopg.types.json import Jsonb

        doc = FIELDS.index("doc")
        if shape == "inserts":
            for p in params:
                p[doc] = None if p[doc] is None else Jsonb(p[doc])
        conn = pg_connect(spec["dsn"])
        with conn.cursor() as cur:
            for at in range(0, n, tx_size):
                chunk = params[at : at + tx_size]
                if tx_size == 1:
                    cur.execute(sql, chunk[0])
                else:
                    with conn.transaction():
                        cur.executemany(sql, chunk)
                first = first or time.monotonic()
        last = time.monotonic()
        key_row = conn.execute(f"SELECT id FROM {TABLE} WHERE title = %s", (params[-1][0],))
        last_key = key_row.fetchone()[0]  # type: ignore[index]
        conn.close()
    else:
        doc = FIELDS.index("doc")
        seen = FIELDS.index("seen_at")
        for p in params:
            if shape == "inserts":
                p[doc] = None if p[doc] is None else json.dumps(p[doc], ensure_ascii=False)
                at_col = seen
            else:
                at_col = 2
            if p[at_col] is not None:
                p[at_col] = p[at_col].astimezone(UTC).replace(tzinfo=None)
        my = my_connect(spec["dsn"])
        with my.cursor() as cur:
            for at in range(0, n, tx_size):
                chunk = params[at : at + tx_size]
                if tx_size == 1:
                    cur.execute(sql, chunk[0])
                else:
                    my.begin()
                    cur.executemany(sql, chunk)
                    my.commit()
                first = first or time.monotonic()
        last = time.monotonic()
        last_key = my_exec(my, f"SELECT id FROM {TABLE} WHERE title = %s", (params[-1][0],))[0][0]
        my.close()
    print(json.dumps({"first": first, "last": last, "last_key": last_key, "title": params[-1][0]}))


# --- child: the raw limit ---------------------------------------------------------------------


def child_raw(spec: dict[str, Any]) -> None:
    cols = ", ".join(FIELDS)
    rss_before = _rss_mib()
    t = time.monotonic()
    if spec["sor"] == "pg":
        import psycopg

        tsv = Path(spec["work"]) / f"{spec['sync']}.raw.tsv"
        with psycopg.connect(spec["pg"]) as pg:
            pg.execute("SET TIME ZONE 'UTC'")
            with pg.cursor(name="raw") as cur, open(tsv, "w", encoding="utf-8") as f:
                cur.itersize = 5000
                cur.execute(f"SELECT id, {cols} FROM {TABLE}")
                for row in cur:
                    f.write(tsv_line(row))
        read_s = time.monotonic() - t
        my = my_connect(spec["my"], local_infile=True)
        load_my(my, tsv, [EXT, *FIELDS])
        my.close()
    else:
        import pymysql

        my = my_connect(spec["my"], cursorclass=pymysql.cursors.SSCursor)
        pg = pg_connect(spec["pg"])
        read_s = 0.0
        with (
            my.cursor() as src,
            pg.transaction(),
            pg.cursor() as cur,
            cur.copy(f"COPY {TABLE} ({EXT}, {cols}) FROM STDIN") as cp,
        ):
            src.execute(f"SELECT id, {cols} FROM {TABLE}")
            for row in src:
                cp.write_row(row)
        my.close()
    took = time.monotonic() - t
    record = {"step": "initial", "seconds": took, "rows": spec["rows"], "rss_mib": _rss_mib()}
    record.update(rss_before_mib=rss_before, read_seconds=read_s)
    pg, my = pg_connect(spec["pg"]), my_connect(spec["my"])
    detail = compare(pg, my, spec["sor"])
    record["identical"] = not detail
    if detail:
        record["detail"] = detail
    _emit(spec["out"], record)
    what = "identical" if not detail else f"DIFFERENT: {detail}"
    print(f"  {spec['tag']} initial: {_describe(record)}; {what}", flush=True)


# --- child: dlt (run with the interpreter of dlt's own environment) -------------------------


def child_dlt(spec: dict[str, Any]) -> None:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = spec["work"]
    import dlt
    from dlt.sources.sql_database import sql_table

    rss_before = _rss_mib()
    t = time.monotonic()
    source = sql_table(credentials=spec["src_url"], table=TABLE, backend=spec["backend"])
    if spec["sor"] == "pg":
        dest = dlt.destinations.sqlalchemy(credentials=spec["dst_url"])
    else:
        dest = dlt.destinations.postgres(credentials=spec["dst_url"])
    pipe = dlt.pipeline(
        pipeline_name=spec["sync"],
        destination=dest,
        dataset_name=spec["dataset"],
        pipelines_dir=str(Path(spec["work"]) / "dlt_pipelines"),
    )
    pipe.run(source)
    took = time.monotonic() - t
    record = {"step": "initial", "seconds": took, "rows": spec["rows"], "rss_mib": _rss_mib()}
    record["rss_before_mib"] = rss_before
    _emit(spec["out"], record)
    print(f"  {spec['tag']} initial: {_describe(record)}", flush=True)


# --- the orchestrator -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, base: Path, pg_dsn: str, my_dsn: str) -> None:
        self.a = args
        self.base = base
        self.pg_root = pg_dsn  # postgresql://postgres@127.0.0.1:PORT/postgres
        self.my_root = my_dsn  # mysql://root@127.0.0.1:PORT/
        self.deadline = time.monotonic() + args.max_seconds
        self.tsv = base / "source.tsv"
        self.dlt_python: str | None = None
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.children: list[subprocess.Popen[Any]] = []
        self.failures: list[str] = []  # children that crashed (not: ran out of time)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime("out of time")
        return left

    def pg_db(self, name: str) -> str:
        return self.pg_root.rsplit("/", 1)[0] + "/" + name

    def my_db(self, name: str) -> str:
        return self.my_root.rstrip("/") + "/" + name

    # fresh databases: the full side loaded from the file, the empty side with `src_id`
    def create(self, name: str, direction: str, target_table: bool = True) -> None:
        with pg_connect(self.pg_root) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        root = my_connect(self.my_root)
        my_exec(root, f"CREATE DATABASE `{name}`")
        root.close()
        full_pg = SOURCE[direction] == "pg"
        pg, my = pg_connect(self.pg_db(name)), my_connect(self.my_db(name), local_infile=True)
        try:
            if full_pg or target_table:
                pg.execute(pg_ddl(with_ext=not full_pg))
            if not full_pg or target_table:
                my_exec(my, my_ddl(with_ext=full_pg))
            if full_pg:
                load_pg(pg, self.tsv, ["id", *FIELDS])
                pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), max(id)) FROM {TABLE}"
                )
                pg.execute(f"ANALYZE {TABLE}")
            else:
                load_my(my, self.tsv, ["id", *FIELDS])
                my_exec(my, f"ANALYZE TABLE {TABLE}")
        finally:
            pg.close()
            my.close()

    def drop(self, name: str) -> None:
        with pg_connect(self.pg_root) as c:
            for (slot,) in c.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        root = my_connect(self.my_root)
        my_exec(root, f"DROP DATABASE IF EXISTS `{name}`")
        my_exec(root, f"DROP DATABASE IF EXISTS `{name}_dlt`")
        root.close()

    def child(self, python: str, kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Runs one child in a process group of its own (so a timeout or Ctrl-C stops its
        writer too); returns the records it wrote, even when it failed part-way."""
        out = Path(spec["out"])
        log = out.with_suffix(".stderr")
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [python, __file__, "--child", kind, json.dumps(spec)],
                cwd=self.base,  # dlt looks for its settings in the working folder
                stderr=err,
                start_new_session=True,
            )
        self.children.append(proc)
        try:
            proc.wait(timeout=max(1.0, self.remaining()) + 30)
        except subprocess.TimeoutExpired:
            self.errors.append(f"{spec['tag']}: out of time")
        finally:
            stop_group(proc)
            self.children.remove(proc)
        if proc.returncode not in (0, None, -signal.SIGTERM, -signal.SIGKILL):
            msg = f"{spec['tag']} {kind} child exited with {proc.returncode}"
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            print(msg + ", the end of its stderr:\n    " + "\n    ".join(tail), file=sys.stderr)
            self.errors.append(msg)
            if time.monotonic() < self.deadline:
                self.failures.append(msg)
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    def contender(self, rep: int, direction: str, who: str, profile: bool = False) -> None:
        name = f"tp_{uuid.uuid4().hex[:10]}"
        tag = f"rep {rep + 1} {LABEL[direction]} {who}:"
        sor = SOURCE[direction]
        started = time.monotonic()
        self.create(name, direction, target_table=not who.startswith("dlt"))
        print(f"  {tag} databases ready in {time.monotonic() - started:.1f} s", flush=True)
        spec: dict[str, Any] = {
            "tag": tag,
            "sync": name,
            "sor": sor,
            "rows": self.a.rows,
            "pg": self.pg_db(name),
            "my": self.my_db(name),
            "out": str(self.base / f"{name}.jsonl"),
            "work": str(self.base),
            "deadline": self.deadline,
        }
        python = sys.executable
        if who == "ours":
            other = "my" if sor == "pg" else "pg"
            yaml = self.base / f"{name}.yaml"
            yaml.write_text(
                YAML.format(
                    sync=name,
                    batch=self.a.batch_size,
                    sor=sor,
                    other=other,
                    ext=EXT,
                    fields=", ".join(f"{f}: {f}" for f in FIELDS),
                )
            )
            if self.a.state == "postgres":
                with pg_connect(self.pg_root) as c:
                    c.execute(f'CREATE DATABASE "{name}_state"')
                state = self.pg_db(f"{name}_state")
            else:
                state = f"sqlite:///{self.base / (name + '.state.db')}"
            spec.update(
                yaml=str(yaml),
                state=state,
                changes=self.a.changes,
                tx_size=max(1, self.a.changes // self.a.transactions),
                shapes=[] if self.a.no_sustained else list(SHAPES),
                lag_seconds=0 if self.a.no_sustained else self.a.lag_seconds,
                lag_rate=self.a.lag_rate,
            )
            if profile:
                spec["profile"] = str(self.base / f"{name}.prof")
                spec["profile_changes"] = self.a.profile_changes
        elif who.startswith("dlt"):
            assert self.dlt_python is not None
            python = self.dlt_python
            pg_host = self.pg_root.split("@", 1)[1].split("/", 1)[0]
            my_host = self.my_root.split("@", 1)[1].split("/", 1)[0]
            # trust authentication: dlt insists on a password, the server ignores it
            pg_url = f"postgresql://postgres:unused@{pg_host}/{name}"
            my_url = f"mysql+pymysql://root@{my_host}/{name}"
            spec.update(
                backend="pyarrow" if who == "dlt_arrow" else "sqlalchemy",
                src_url=pg_url.replace("postgresql://", "postgresql+psycopg2://")
                if sor == "pg"
                else my_url,
                dst_url=my_url if sor == "pg" else pg_url,
                dataset=f"{name}_dlt",
            )
        try:
            records = self.child(python, who, spec)
            if who.startswith("dlt") and records:
                records[0]["rows_loaded"] = self.count_dlt(name, sor)
                records[0]["identical"] = records[0]["rows_loaded"] == self.a.rows
                if not records[0]["identical"]:
                    records[0]["detail"] = f"dlt loaded {records[0]['rows_loaded']} rows"
            for r in records:
                r.update(rep=rep, direction=direction, contender=who)
                self.samples.append(r)
        finally:
            self.drop(name)
            if who == "ours" and self.a.state == "postgres":
                with pg_connect(self.pg_root) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}_state" WITH (FORCE)')
            print(f"  {tag} done in {time.monotonic() - started:.1f} s", flush=True)

    def count_dlt(self, name: str, sor: str) -> int:
        if sor == "pg":
            my = my_connect(self.my_root)
            n = int(my_exec(my, f"SELECT COUNT(*) FROM `{name}_dlt`.{TABLE}")[0][0])
            my.close()
            return n
        with pg_connect(self.pg_db(name)) as pg:
            row = pg.execute(f'SELECT count(*) FROM "{name}_dlt".{TABLE}').fetchone()
            return int(row[0]) if row else 0


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stops a child started in its own session and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    # the child is gone; a writer it started (same process group) may not be
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def prepare_dlt(base: Path, timeout: float) -> tuple[str | None, str]:
    """dlt in a virtual environment of its own under `base`; (its python, or None; a note)."""
    venv = base / "dlt-venv"
    log = base / "dlt-install.log"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        with open(log, "w") as f:
            subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "install",
                    "--disable-pip-version-check",
                    "dlt[sql_database,sqlalchemy,postgres,parquet]",
                    "pymysql",
                ],
                check=True,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        python = str(venv / "bin" / "python")
        version = subprocess.run(
            [python, "-c", "import dlt; print(dlt.__version__)"],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout.strip()
        return python, f"dlt {version} (own virtual environment)"
    except (subprocess.SubprocessError, OSError) as e:
        tail = log.read_text()[-500:] if log.exists() else ""
        return None, f"dlt skipped: it could not be installed ({e}) {tail}".strip()


def code_version() -> str:
    """The commit measured, and whether the library had uncommitted changes (the children
    import the code as it is when each starts)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "syncswim_lib"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' with uncommitted changes to syncswim_lib' if dirty else ''}"


def machine(bench: Bench, load: tuple[float, ...], notes: list[str]) -> dict[str, Any]:
    import psycopg
    import pyarrow
    import pymysql

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with pg_connect(bench.pg_root) as pg:
        row = pg.execute("SHOW server_version").fetchone()
    my = my_connect(bench.my_root)
    my_version = my_exec(my, "SELECT VERSION()")[0][0]
    my.close()
    return {
        "code": code_version(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_start": [round(x, 2) for x in load],
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": row[0] if row else "?",
        "mariadb": my_version,
        "drivers": f"psycopg {psycopg.__version__}, PyMySQL {pymysql.__version__}, "
        f"pyarrow {pyarrow.__version__}",
        "notes": notes,
    }


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _fmt(x: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{unit}"


def summarise(bench: Bench) -> dict[str, Any]:
    """Medians per direction, contender and step."""
    out: dict[str, Any] = {}
    for direction in DIRECTIONS:
        d: dict[str, Any] = {}
        for who in CONTENDERS:
            rows = [s for s in bench.samples if s["direction"] == direction]
            mine = [s for s in rows if s["contender"] == who]
            if not mine:
                continue
            c: dict[str, Any] = {}
            for step in sorted({s["step"] for s in mine} - {"final"}):
                xs = [s for s in mine if s["step"] == step]

                def med(key: str, xs: list[dict[str, Any]] = xs) -> float | None:
                    return _median([s[key] for s in xs if s.get(key) is not None])

                m: dict[str, Any] = {"n": len(xs), "seconds": med("seconds")}
                if step == "initial":
                    m["rows_per_s"] = _median([s["rows"] / s["seconds"] for s in xs])
                    m["rss_mib"] = med("rss_mib")
                if step.startswith("sustained"):
                    m["changes_per_s"] = med("rate")
                    m["offered_per_s"] = med("offered_rate")
                    m["runs"] = med("runs")
                    m["gave_up"] = sum(1 for s in xs if s.get("gave_up"))
                if step == "lag":
                    for key in ("offered_rate", "lag_p50", "lag_max", "lag_slope"):
                        m[key] = med(key)
                    m["bounded"] = all(s.get("bounded") for s in xs)
                    m["gave_up"] = sum(1 for s in xs if s.get("gave_up"))
                m["writes"], m["captured"] = med("writes"), med("captured")
                c[step] = m
            d[who] = c
        ours = d.get("ours", {}).get("initial", {}).get("rows_per_s")
        for who, c in d.items():
            if ours and who != "ours" and c.get("initial", {}).get("rows_per_s"):
                c["initial"]["ours_over_this"] = ours / c["initial"]["rows_per_s"]
        out[direction] = d
    return out


def report(bench: Bench, summary: dict[str, Any], info: dict[str, Any]) -> None:
    print("\nmachine:")
    print(f"  CPU: {info['cpus']} x {info['cpu_model']}")
    print(f"  load average at start: {', '.join(str(x) for x in info['load_average_start'])}")
    print(f"  {info['system']}; Python {info['python']}; {info['drivers']}")
    print(f"  PostgreSQL {info['postgresql']}; MariaDB {info['mariadb']}")
    print(f"  code at start: {info['code']}; at end: {info.get('code_end', '?')}")
    for n in info["notes"]:
        print(f"  {n}")
    a = bench.a
    print(f"\n{a.rows:,} rows, {a.changes:,} changes per shape, medians of up to {a.reps}")
    print("\ninitial sync (one side full, the other empty):")
    print(f"  {'direction':<22} {'contender':<38} {'rows/s':>9} {'peak RSS':>9} {'ours/this':>9}")
    for direction, d in summary.items():
        for who, c in d.items():
            i = c.get("initial")
            if not i:
                continue
            name = RAW_NAMES[direction] if who == "raw" else NAMES[who]
            ratio = _fmt(i.get("ours_over_this"), ".2f", "x") if who != "ours" else ""
            rss = _fmt(i.get("rss_mib"), ".0f", " MiB")
            print(
                f"  {LABEL[direction]:<22} {name:<38} {_fmt(i['rows_per_s']):>9} {rss:>9}"
                f" {ratio:>9}"
            )
    print("  targets: ours >= 0.8x raw; >= 3x dlt's fastest backend; peak RSS < 500 MB")
    if not a.profile:
        _report_after(summary)
    if not a.profile and not a.no_sustained:
        _report_sustained(summary, a.transactions)
        if a.lag_seconds:
            _report_lag(summary, a.lag_seconds)
    bad = [s for s in bench.samples if s.get("identical") is False]
    compared = sum(1 for s in bench.samples if "identical" in s)
    print(f"\ncopies compared: {compared}, differing: {len(bad)}")
    for s in bad:
        print(f"  {LABEL[s['direction']]} {s['contender']} {s['step']}: {s.get('detail')}")
    for e in bench.errors:
        print(f"  error: {e}")


def _report_after(summary: dict[str, Any]) -> None:
    print("\nafter the initial sync (ours):")
    print(f"  {'direction':<22} {'step':<34} {'seconds':>8} {'written':>8} {'captured':>9}")
    for direction, d in summary.items():
        c = d.get("ours", {})
        for step, what in (
            ("noop", "no-op run (target < 5 s)"),
            ("full_equal", "full of equal tables (target: 0)"),
        ):
            if step in c:
                m = c[step]
                print(
                    f"  {LABEL[direction]:<22} {what:<34} {_fmt(m['seconds'], '.2f'):>8}"
                    f" {_fmt(m['writes']):>8} {_fmt(m['captured']):>9}"
                )


def _report_sustained(summary: dict[str, Any], transactions: int) -> None:
    print("\nsustained changes on the full side (first commit → last change visible):")
    print(f"  {'direction':<22} {'shape':<42} {'changes/s':>9} {'offered/s':>9} {'runs':>5}")
    targets = {"autocommit": 3000, "transactions": 10000, "inserts": None}
    for direction, d in summary.items():
        c = d.get("ours", {})
        for shape in SHAPES:
            m = c.get(f"sustained_{shape}")
            if not m:
                continue
            what = {
                "autocommit": "single-row updates, autocommit",
                "transactions": f"updates, {transactions} transactions",
                "inserts": f"inserts, {transactions} transactions",
            }[shape]
            t = targets[shape]
            what += f" (>= {t:,})" if t else ""
            print(
                f"  {LABEL[direction]:<22} {what:<42} {_fmt(m['changes_per_s']):>9}"
                f" {_fmt(m['offered_per_s']):>9} {_fmt(m['runs']):>5}"
            )


def _report_lag(summary: dict[str, Any], seconds: float) -> None:
    print(f"\nlag at an offered rate ({seconds:.0f} s of single-row autocommit updates):")
    print(
        f"  {'direction':<22} {'offered/s':>9} {'lag p50':>8} {'lag max':>8} {'slope':>7} bounded"
    )
    for direction, d in summary.items():
        m = d.get("ours", {}).get("lag")
        if not m:
            continue
        print(
            f"  {LABEL[direction]:<22} {_fmt(m['offered_rate']):>9}"
            f" {_fmt(m['lag_p50'], '.2f', ' s'):>8} {_fmt(m['lag_max'], '.2f', ' s'):>8}"
            f" {_fmt(m['lag_slope'], '.3f'):>7} {'yes' if m['bounded'] else 'NO'}"
        )


def expected_steps(a: argparse.Namespace) -> list[str]:
    steps = ["initial", "noop", "full_equal"]
    if not a.no_sustained:
        steps += [f"sustained_{s}" for s in SHAPES]
        if a.lag_seconds:
            steps.append("lag")
    return [*steps, "final"]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the full side")
    ap.add_argument("--changes", type=int, default=20_000, help="changes per sustained shape")
    ap.add_argument("--transactions", type=int, default=20, help="transactions per batched shape")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported)")
    ap.add_argument("--batch-size", type=int, default=1000, help="the sync's batch_size")
    ap.add_argument("--state", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--json", type=Path, help="write the samples and medians here")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 1,000 rows, 300 changes, ours, once"
    )
    ap.add_argument("--no-dlt", action="store_true", help="do not install and run dlt")
    ap.add_argument("--no-baselines", action="store_true", help="ours only (no raw, no dlt)")
    ap.add_argument("--no-sustained", action="store_true", help="skip the sustained changes")
    ap.add_argument(
        "--lag-seconds", type=float, default=60, help="the lag step's length (0: skip it)"
    )
    ap.add_argument(
        "--lag-rate", type=float, default=500, help="changes/s the lag step's writer offers"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="only profile our initial sync once per direction (cProfile, top 15)",
    )
    ap.add_argument(
        "--profile-changes",
        choices=SHAPES,
        help="with --profile: profile the runs that apply --changes of this shape instead",
    )
    ap.add_argument("--max-seconds", type=float, default=10_800, help="bound on the whole run")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, spec = a.child[0], json.loads(a.child[1])
        children = {
            "ours": child_ours,
            "raw": child_raw,
            "writer": child_writer,
            "paced": child_paced,
        }
        children.get(kind, child_dlt)(spec)  # dlt and dlt_arrow: child_dlt
        return 0
    if a.quick:
        a.rows, a.changes, a.reps = min(a.rows, 1000), min(a.changes, 300), 1
        a.lag_seconds, a.lag_rate = min(a.lag_seconds, 3), min(a.lag_rate, 100)
        a.no_baselines = True
    if a.profile:
        a.no_baselines, a.reps = True, 1
    # a child inherits an ignored SIGINT (`bench &` in a script): handle it ourselves
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    sys.path.insert(0, str(REPO))
    from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

    load_at_start = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="syncswim-throughput-"))
    pg, my = PostgresServer(base / "pg"), MariaDBServer(base / "my")
    bench: Bench | None = None
    try:
        t = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # both at once: a smoke run waits less
            for started in [pool.submit(pg.start), pool.submit(my.start)]:
                started.result()
        print(f"servers started in {time.monotonic() - t:.1f} s", flush=True)
        bench = Bench(a, base, pg.dsn, my.dsn)
        write_tsv(bench.tsv, a.rows)
        notes = [
            "each contender in a child process of its own, fresh databases each time; "
            f"state store: {a.state}; the sync's batch_size {a.batch_size}"
        ]
        contenders = ["ours"]
        if not a.no_baselines:
            contenders.append("raw")
            if not a.no_dlt:
                print("installing dlt into its own virtual environment ...", flush=True)
                bench.dlt_python, note = prepare_dlt(base, min(600, bench.remaining()))
                notes.append(note)
                if bench.dlt_python:
                    contenders += ["dlt", "dlt_arrow"]
        info = machine(bench, load_at_start, notes)
        print(
            f"{info['cpus']} CPUs, load {info['load_average_start']} at start; "
            f"PostgreSQL {info['postgresql']}, MariaDB {info['mariadb']}; "
            f"{a.rows:,} rows, {a.changes:,} changes, {a.reps} reps",
            flush=True,
        )
        try:
            if a.profile:
                for direction in DIRECTIONS:
                    bench.contender(0, direction, "ours", profile=True)
            for rep in range(0 if a.profile else a.reps):
                directions = DIRECTIONS if rep % 2 == 0 else DIRECTIONS[::-1]
                for direction in directions:
                    shift = rep % len(contenders)
                    for who in contenders[shift:] + contenders[:shift]:
                        bench.remaining()
                        bench.contender(rep, direction, who)
        except OutOfTime as e:
            print(f"stopped early: {e}", file=sys.stderr)
            bench.errors.append(f"stopped early: {e}")
        summary = summarise(bench)
        info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        info["code_end"] = code_version()
        report(bench, summary, info)
        print(f"load average at end: {', '.join(str(x) for x in info['load_average_end'])}")
        missing = [
            f"{d} {s}"
            for d in DIRECTIONS
            for s in (["initial"] if a.profile else expected_steps(a))
            if not any(
                x["direction"] == d and x["contender"] == "ours" and x["step"] == s
                for x in bench.samples
            )
        ]
        ok = not any(s.get("identical") is False for s in bench.samples)
        ok = ok and not bench.failures and not (a.quick and (missing or bench.errors))
        if a.json:
            a.json.write_text(
                json.dumps(
                    {
                        "ok": ok,
                        "settings": {
                            k: v for k, v in vars(a).items() if k not in ("json", "child")
                        },
                        "machine": info,
                        "measurements": bench.samples,
                        "missing": missing,
                        "errors": bench.errors,
                        "summary": summary,
                    },
                    indent=1,
                    default=str,
                )
            )
        if missing:
            print(f"not measured: {', '.join(missing)}", file=sys.stderr)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        if bench is not None:
            for proc in list(bench.children):
                stop_group(proc)
        my.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
