"""What a run costs per record: this checkout against an earlier revision, side by side.

Starts one private PostgreSQL and one MariaDB (the sandbox servers) in a temporary folder.
For each repetition and each code version (interleaved, so both see the same machine), a
child process with that version on its path creates fresh databases with a 5-column table
(SOR mode: PostgreSQL the system of record, MariaDB with its own AUTO_INCREMENT keys) and
times `run_entity`:

- initial: N rows on PostgreSQL, MariaDB empty, a `full` run;
- pg→my: one UPDATE of all N rows on PostgreSQL (one transaction), then a run;
- my→pg: the same on MariaDB;
- idle: a run with nothing to do.

The baseline is extracted with `git archive` into the temporary folder; nothing in the
checkout changes. Everything started is stopped on exit, Ctrl-C and errors.

    .venv/bin/python bench/merge_cost.py [--rows 5000] [--reps 3] [--baseline a6a7417]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

YAML = """
endpoints:
  app: {kind: postgres, dsn: {env: BENCH_PG_DSN}}
  shop: {kind: mysql, dsn: {env: BENCH_MY_DSN}}
syncs:
  {sync}:
    between: [app, shop]
    run: micro_batch
    batch_size: 1000
    entities:
      items:
        app: {table: public.items, key: [id]}
        shop: {table: items, key: [id]}
        mode: {system_of_record: app, external_id: {shop: app_id}}
        fields: {name: name, amount: amount, note: note, n: n}
"""


def child(code: str, pg_root: str, my_root: str, rows: int, work: str) -> None:
    """One measurement with the code on sys.path; prints one JSON line."""
    sys.path.insert(0, code)
    import psycopg
    import pymysql

    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.run import run_entity
    from syncswim_lib.pipeline.runtime import Runtime

    name = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_root, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    pg_dsn = pg_root.rsplit("/", 1)[0] + "/" + name
    host_port = my_root.split("@", 1)[1].rstrip("/")
    host, port = host_port.split(":")
    my = pymysql.connect(host=host, port=int(port), user="root", autocommit=True)
    with my.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"USE {name}")
        cur.execute(
            "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, app_id int UNIQUE,"
            " name varchar(100), amount decimal(12,2), note text, n int)"
        )
        cur.execute("ALTER TABLE items AUTO_INCREMENT = 100000")
    pg = psycopg.connect(pg_dsn, autocommit=True)
    pg.execute(
        "CREATE TABLE items (id serial PRIMARY KEY, name varchar(100), amount numeric(12,2),"
        " note text, n integer)"
    )
    pg.execute(
        "INSERT INTO items (name, amount, note, n) SELECT 'name ' || g, g * 1.25, 'note', g"
        " FROM generate_series(1, %s) g",
        (rows,),
    )
    os.environ["BENCH_PG_DSN"] = pg_dsn
    os.environ["BENCH_MY_DSN"] = f"mysql://root@{host}:{port}/{name}"
    path = Path(work) / f"{name}.yaml"
    path.write_text(YAML.replace("{sync}", name))
    state = f"sqlite:///{Path(work) / (name + '.db')}"
    out: dict[str, float] = {}

    def timed(label: str, full: bool = False) -> int:
        with Runtime(load_project(path), state_url=state) as rt:
            start = time.perf_counter()
            report = run_entity(rt, name, "items", full)
            out[label] = time.perf_counter() - start
            return report.writes

    timed("setup")  # slot, publication, markers, positions
    written = timed("initial", full=True)
    assert written == rows, f"initial sync wrote {written} of {rows}"
    pg.execute("UPDATE items SET n = n + 1")
    written = timed("pg_to_my")
    assert written == rows, f"pg→my wrote {written} of {rows}"
    with my.cursor() as cur:
        cur.execute("UPDATE items SET note = CONCAT(note, '!')")
    written = timed("my_to_pg")
    assert written == rows, f"my→pg wrote {written} of {rows}"
    timed("idle")
    pg.close()
    with psycopg.connect(pg_root, autocommit=True) as c:  # slots are server-wide
        c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s",
            (name,),
        )
    my.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--baseline", default="a6a7417", help="git revision to compare against")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        code, pg_root, my_root, rows, work = args.child
        child(code, pg_root, my_root, int(rows), work)
        return

    sys.path.insert(0, str(REPO))
    from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="syncswim-bench-"))
    base = tmp / "baseline"
    base.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    pg, my = PostgresServer(tmp / "pg"), MariaDBServer(tmp / "my")
    versions = {"baseline": str(base), "this": str(REPO)}
    results: dict[str, list[dict[str, float]]] = {v: [] for v in versions}
    try:
        pg.start()
        my.start()
        print(
            f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f} at start; python {platform.python_version()}; "
            f"{args.rows} rows, {args.reps} reps; baseline {args.baseline}",
            flush=True,
        )
        for rep in range(args.reps):
            order = list(versions) if rep % 2 == 0 else list(reversed(versions))
            for v in order:
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        versions[v],
                        pg.dsn,
                        my.dsn,
                        str(args.rows),
                        str(tmp),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    env={**os.environ, "PYTHONPATH": versions[v]},
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{v} failed:\n{proc.stderr[-3000:]}")
                sample = json.loads(proc.stdout.strip().splitlines()[-1])
                results[v].append(sample)
                print(
                    f"rep {rep + 1} {v}: "
                    + json.dumps({k: round(x, 2) for k, x in sample.items()}),
                    flush=True,
                )
    finally:
        my.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args.rows)


def report(results: dict[str, list[dict[str, Any]]], rows: int) -> None:
    print()
    print("| step | baseline rows/s | this rows/s | speed vs baseline |")
    print("|---|---|---|---|")
    for step in ("initial", "pg_to_my", "my_to_pg"):
        b = statistics.median(s[step] for s in results["baseline"])
        t = statistics.median(s[step] for s in results["this"])
        print(f"| {step} | {rows / b:,.0f} | {rows / t:,.0f} | {b / t:.2f}x |")
    b = statistics.median(s["idle"] for s in results["baseline"])
    t = statistics.median(s["idle"] for s in results["this"])
    print(f"| idle run (s) | {b:.2f} | {t:.2f} | {b / t:.2f}x |")


if __name__ == "__main__":
    main()
