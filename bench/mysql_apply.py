"""MariaDB apply throughput: the connector's set-based write path against the previous one.

Starts a private MariaDB (the sandbox server) in a temporary folder. For each repetition
and each contender (interleaved, the order alternating, so both see the same machine), a
fresh database with a 10-column mixed-type table (bigint AUTO_INCREMENT key, varchar,
text, int, decimal, bool, date, timestamp, json, double) set up for a sync, then, through
`MySQLConnector`, in ApplyBatches of `--batch` rows:

- inserts: `--rows` new rows (generated keys returned, each checked against its row);
- updates: every row, five columns set (`--expected`: each with a compare-and-set row
  checking two columns, as the merge sends them);
- deletes: every row.

The contenders are this checkout's apply and the apply of `--baseline` (its
`syncswim_lib/connectors/mysql/apply.py`, read with `git show` and loaded as a module of
its own over this checkout's other modules; nothing in the checkout changes). Building the
Arrow batches is not timed. After each phase the table is checked (row count, a digest of
the contents equal for both contenders). Prints the machine, each sample and a table of
medians; `--json` also writes them. Everything started is stopped on exit, Ctrl-C and
errors.

    .venv/bin/python bench/mysql_apply.py [--rows 20000] [--batch 5000] [--reps 3]
        [--expected] [--baseline 77b47a5 | --no-baseline] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncswim_lib.connectors.base import ApplyBatch, ApplyResult  # noqa: E402
from syncswim_lib.connectors.mysql import MySQLConnector  # noqa: E402
from syncswim_lib.connectors.mysql import apply as current_apply  # noqa: E402
from syncswim_lib.sandbox.servers import MariaDBServer  # noqa: E402
from syncswim_lib.values import TableInfo  # noqa: E402
from syncswim_lib.values.arrow import REF, rows_to_table  # noqa: E402

DDL = """
CREATE TABLE items (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    code varchar(40),
    name text,
    qty int,
    amount decimal(14,4),
    active boolean,
    day date,
    at timestamp(6) NULL,
    doc json,
    score double
) ENGINE=InnoDB
"""
PHASES = ("inserts", "updates", "deletes")
UPDATED = ("name", "qty", "amount", "at", "doc")
CHECKED = ("qty", "amount")  # what --expected compares
# the contents without the generated ids: a statement whose row count InnoDB does not
# know beforehand (INSERT ... SELECT from the staging table) reserves ids in doubling
# blocks and leaves the unused ones as a gap, so the two contenders' ids may differ
COLUMNS = "code, name, qty, amount, active, day, at, doc, score"
DIGEST = (
    f"SELECT count(*), md5(coalesce(group_concat(concat_ws('|', {COLUMNS})"
    " ORDER BY code SEPARATOR '\\n'), '')) FROM items"
)
# the last revision writing one statement per row
BASELINE = "77b47a5"

Apply = Callable[[MySQLConnector, ApplyBatch], ApplyResult]


def baseline_module(rev: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:syncswim_lib/connectors/mysql/apply.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("mysql_apply_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:apply.py", "exec"), module.__dict__)
    return module


def contender(module: types.ModuleType) -> Apply:
    def apply(connector: MySQLConnector, batch: ApplyBatch) -> ApplyResult:
        # what MySQLConnector.apply does, with the module under test
        info = connector.describe(batch.table)
        result: ApplyResult = module.apply_batch(
            connector._connection(), info, connector.db, batch, connector.endpoint
        )
        return result

    return apply


def insert_rows(n: int) -> list[dict[str, Any]]:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {
            REF: f"i{i}",
            "code": f"C{i:08d}",
            "name": f"name {i} ünï",
            "qty": i,
            "amount": Decimal(i) / 8,
            "active": i % 2 == 0,
            "day": date(2020, 1, 1) + timedelta(days=i % 3000),
            "at": at + timedelta(seconds=i, microseconds=i % 1000),
            "doc": {"n": i, "tags": ["a", "b"]},
            "score": i / 3,
        }
        for i in range(n)
    ]


def batches(
    info: TableInfo,
    kind: str,
    rows: list[dict[str, Any]],
    size: int,
    tag: str,
    expected: list[dict[str, Any]] | None = None,
) -> list[ApplyBatch]:
    key = [c for c in info.columns if c.name == "id"]
    empty = rows_to_table([], key)
    checked = [c for c in info.columns if c.name in CHECKED]
    out = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        if kind == "inserts":
            table = rows_to_table(chunk, [c for c in info.columns if c.name != "id"])
        elif kind == "updates":
            table = rows_to_table(chunk, [c for c in info.columns if c.name in ("id", *UPDATED)])
        else:
            table = rows_to_table(chunk, key)
        parts = {"inserts": empty, "updates": empty, "deletes": empty, kind: table}
        seen = None
        if expected is not None:
            seen = rows_to_table(expected[start : start + size], checked, lists=("__check",))
        out.append(
            ApplyBatch(
                batch_id=f"{tag}-{kind}-{start}",
                origin=tag,
                table="items",
                key_columns=("id",),
                inserts=parts["inserts"],
                updates=parts["updates"],
                deletes=parts["deletes"],
                expected=seen,
            )
        )
    return out


def _connect(port: int, db: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host="127.0.0.1", port=port, user="root", database=db, autocommit=True, charset="utf8mb4"
    )


def _timed(apply: Apply, connector: MySQLConnector, work: list[ApplyBatch]) -> Any:
    start = time.perf_counter()
    results = [apply(connector, b) for b in work]
    return time.perf_counter() - start, results


def measure(port: int, apply: Apply, rows: int, size: int, with_expected: bool) -> dict[str, Any]:
    """One contender on a fresh database: seconds per phase and the digest after each."""
    name = f"b_{uuid.uuid4().hex[:10]}"
    root = _connect(port)
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    out: dict[str, Any] = {}
    connector = MySQLConnector(f"mysql://root@127.0.0.1:{port}/{name}", "bench")
    conn = _connect(port, name)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION group_concat_max_len = 1 << 30")
            cur.execute(DDL)
            connector.setup(name, ["items"])
            info = connector.describe("items")

            def digest() -> Any:
                cur.execute(DIGEST)
                return cur.fetchone()

            new = insert_rows(rows)
            seconds, results = _timed(apply, connector, batches(info, "inserts", new, size, name))
            out["inserts"] = seconds
            ids = {ref: key["id"] for r in results for ref, key in r.keys.items()}
            assert sum(r.inserted for r in results) == rows and len(ids) == rows, "inserts"
            assert not any(r.rejected for r in results), "inserts rejected"
            cur.execute("SELECT id, code FROM items")
            stored = dict(cur.fetchall())
            wrong = sum(stored.get(ids[r[REF]]) != r["code"] for r in new)
            assert wrong == 0, f"{wrong} keys point at another row"
            out["digest_inserts"] = digest()

            at = datetime(2025, 6, 1, 12, tzinfo=UTC)
            changed = [
                {
                    REF: f"u{i}",
                    "id": ids[r[REF]],
                    "name": f"{r['name']} (changed)",
                    "qty": -i,
                    "amount": Decimal(i) / 16,
                    "at": at + timedelta(microseconds=i),
                    "doc": {"n": i, "changed": True},
                }
                for i, r in enumerate(new)
            ]
            seen = None
            if with_expected:
                seen = [
                    {REF: f"u{i}", "__check": list(CHECKED), **{c: r[c] for c in CHECKED}}
                    for i, r in enumerate(new)
                ]
            work = batches(info, "updates", changed, size, name, seen)
            seconds, results = _timed(apply, connector, work)
            out["updates"] = seconds
            assert sum(r.updated for r in results) == rows, "updates"
            assert not any(r.stale or r.rejected or r.missing for r in results), "updates"
            out["digest_updates"] = digest()

            gone = [{REF: f"d{i}", "id": ids[r[REF]]} for i, r in enumerate(new)]
            seconds, results = _timed(apply, connector, batches(info, "deletes", gone, size, name))
            out["deletes"] = seconds
            assert sum(r.deleted for r in results) == rows, "deletes"
            assert digest()[0] == 0, "deletes"
    finally:
        connector.close()
        conn.close()
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        root.close()
    return out


def machine(port: int) -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    conn = _connect(port)
    with conn.cursor() as cur:
        cur.execute("SELECT @@version, @@innodb_autoinc_lock_mode, @@max_allowed_packet")
        version, lock_mode, packet = cur.fetchone()
    conn.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({model or 'unknown model'}), "
        f"load average {load}; python {platform.python_version()}, PyMySQL "
        f"{pymysql.__version__}, MariaDB {version} (innodb_autoinc_lock_mode {lock_mode}, "
        f"max_allowed_packet {packet})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="rows per phase")
    ap.add_argument("--batch", type=int, default=5000, help="rows per ApplyBatch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--expected", action="store_true", help="updates carry compare-and-set rows")
    ap.add_argument("--baseline", default=BASELINE, help="git revision to compare against")
    ap.add_argument("--no-baseline", action="store_true", help="time this checkout only")
    ap.add_argument("--json", type=Path, help="also write the samples and medians here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    contenders: dict[str, Apply] = {"this": contender(current_apply)}
    if not args.no_baseline:
        contenders["baseline"] = contender(baseline_module(args.baseline))
    tmp = Path(tempfile.mkdtemp(prefix="syncswim-bench-"))
    server = MariaDBServer(tmp / "mysql")
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    try:
        server.start()
        about = machine(server.port)
        print(f"machine: {about}", flush=True)
        print(
            f"{args.rows} rows per phase in batches of {args.batch}, {args.reps} reps"
            + (", updates with compare-and-set" if args.expected else "")
            + ("" if args.no_baseline else f", baseline {args.baseline}"),
            flush=True,
        )
        for rep in range(args.reps):
            order = list(contenders) if rep % 2 == 0 else list(reversed(contenders))
            for name in order:
                sample = measure(
                    server.port, contenders[name], args.rows, args.batch, args.expected
                )
                samples[name].append(sample)
                print(
                    f"rep {rep + 1} {name}: "
                    + ", ".join(f"{p} {args.rows / sample[p]:,.0f} rows/s" for p in PHASES),
                    flush=True,
                )
        for phase in ("inserts", "updates"):
            digests = {str(s[f"digest_{phase}"]) for ss in samples.values() for s in ss}
            assert len(digests) == 1, f"the contenders left different tables after {phase}"
        end_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {
        name: {p: args.rows / statistics.median(s[p] for s in ss) for p in PHASES}
        for name, ss in samples.items()
    }
    print(f"\nload average at the end: {end_load}\n")
    if args.no_baseline:
        print("| phase | this rows/s |\n|---|---|")
    else:
        print("| phase | this rows/s | baseline rows/s | ratio |\n|---|---|---|---|")
    for p in PHASES:
        line = f"| {p} | {medians['this'][p]:,.0f} |"
        if not args.no_baseline:
            base = medians["baseline"][p]
            line += f" {base:,.0f} | {medians['this'][p] / base:.1f}x |"
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": about,
                    "rows": args.rows,
                    "batch": args.batch,
                    "expected": args.expected,
                    "baseline": None if args.no_baseline else args.baseline,
                    "seconds": {
                        n: [{p: s[p] for p in PHASES} for s in ss] for n, ss in samples.items()
                    },
                    "rows_per_s": medians,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
