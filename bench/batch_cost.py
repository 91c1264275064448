"""What one streaming micro-batch costs under a steady load: this checkout against an
earlier revision, side by side.

Starts one private PostgreSQL and one MariaDB (the sandbox servers) in a temporary folder.
For each repetition and each code version (interleaved, so both see the same machine), a
child process with that version on its path creates fresh databases with the demo schema
(plus 500 products), runs the initial sync, then a `StreamingRun` of the demo's `app_shop`
sync in its own thread while a paced writer commits single-row autocommit UPDATEs of the
products in PostgreSQL at `--rate` for `--seconds`. Every batch the run applies is timed
(`run_entities`, as the loop calls it: capture, drift check, plan, apply, record); the
child prints the batches' median and p95 cost, the changes per batch and the cost per
change, and whether the copies agree once the writer stops.

`--profile` runs the streaming loop of this checkout once under cProfile instead and
prints the top functions by cumulative and by own time.

    .venv/bin/python bench/batch_cost.py [--seconds 20] [--rate 1000] [--reps 2] [--baseline REV]
    .venv/bin/python bench/batch_cost.py --profile [--seconds 20]
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
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOAD_ROWS = 500


def _sync_yaml(demo: str) -> str:
    """The demo's declaration with its PostgreSQL <-> MariaDB sync only."""
    body = demo[demo.index("syncs:\n") : demo.index("\n  app_crm:")]
    return (
        "endpoints:\n"
        "  app_db:  {kind: postgres, dsn: {env: SYNCSWIM_PG_DSN}}\n"
        "  shop_db: {kind: mysql,    dsn: {env: SYNCSWIM_MYSQL_DSN}}\n" + body + "\n"
    )


def child(
    code: str,
    pg_root: str,
    my_root: str,
    work: str,
    seconds: float,
    rate: float,
    profile: bool,
    burst: int = 0,
    bursts: int = 0,
) -> None:
    """One measurement with the code on sys.path; prints one JSON line last."""
    sys.path.insert(0, code)
    import psycopg
    import pymysql

    from syncswim_lib.config import load_project
    from syncswim_lib.pipeline.run import run_sync
    from syncswim_lib.pipeline.runtime import Runtime
    from syncswim_lib.pipeline.streaming import Batch, StreamingRun
    from syncswim_lib.sandbox.demo import seed
    from syncswim_lib.sandbox.demo_schema import DEMO_YAML

    name = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_root, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    pg_dsn = pg_root.rsplit("/", 1)[0] + "/" + name
    host_port = my_root.split("@", 1)[1].rstrip("/")
    host, port = host_port.split(":")
    my_dsn = f"mysql://root@{host}:{port}/{name}"
    with (
        pymysql.connect(host=host, port=int(port), user="root", autocommit=True) as my,
        my.cursor() as cur,
    ):
        cur.execute(f"CREATE DATABASE {name}")
    seed(pg_dsn, my_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute(
            "INSERT INTO products (sku, name, price, in_stock) "
            "SELECT 'load-' || g, 'load ' || g, 1.00, true FROM generate_series(1, %s) g",
            (LOAD_ROWS,),
        )
    os.environ.update({"SYNCSWIM_PG_DSN": pg_dsn, "SYNCSWIM_MYSQL_DSN": my_dsn})
    path = Path(work) / f"{name}.yaml"
    path.write_text(_sync_yaml(DEMO_YAML))
    state = f"sqlite:///{Path(work) / (name + '.db')}"
    with Runtime(load_project(path), state_url=state) as rt:
        run_sync(rt, "app_shop", full=True)

    batches: list[dict[str, float]] = []
    stop = threading.Event()
    sent = [0]
    t_load = [0.0]
    taken = [0]
    burst_no = [0]
    spent = {"journal_ms": 0.0, "journal_cpu_ms": 0.0}

    def on_batch(b: Batch) -> None:
        n = sum(r.taken for r in b.reports.values())
        taken[0] += n
        if n:
            rep = next(iter(b.reports.values()))
            batches.append(
                {
                    "taken": n,
                    "ms": rep.duration_s * 1000,
                    "burst": burst_no[0],
                    **spent,
                }
            )
        spent.update(journal_ms=0.0, journal_cpu_ms=0.0)

    def update(pg: Any, pid: int) -> None:
        pg.execute("UPDATE products SET price = price + 0.01 WHERE id = %s", (pid,))
        sent[0] += 1

    def load() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as pg:
            ids = [r[0] for r in pg.execute("SELECT id FROM products ORDER BY id").fetchall()]
            start = time.monotonic()
            if burst:
                # bursts of `burst` distinct rows, each applied before the next is sent
                for i in range(bursts):
                    burst_no[0] = i + 1
                    for j in range(burst):
                        update(pg, ids[(i * burst + j) % len(ids)])
                    until = time.monotonic() + 60
                    while taken[0] < sent[0] and time.monotonic() < until:
                        time.sleep(0.005)
                    time.sleep(0.2)
                burst_no[0] = 0
            else:
                while time.monotonic() - start < seconds:
                    due = start + sent[0] / rate
                    now = time.monotonic()
                    if due > now:
                        time.sleep(due - now)
                    update(pg, ids[sent[0] % len(ids)])
            t_load[0] = time.monotonic() - start

    def settled() -> bool:
        with (
            psycopg.connect(pg_dsn) as pg,
            pymysql.connect(host=host, port=int(port), user="root", database=name) as my,
        ):
            a = pg.execute("SELECT sku, price FROM products ORDER BY sku").fetchall()
            with my.cursor() as cur:
                cur.execute("SELECT sku, price FROM products WHERE sku IS NOT NULL ORDER BY sku")
                b = cur.fetchall()
            return [tuple(r) for r in a] == [tuple(r) for r in b]

    done_at = [0.0]

    def should_stop() -> str | None:
        if not writer.is_alive() and t_load[0]:
            if not done_at[0]:
                done_at[0] = time.monotonic()
            if settled():
                return "settled"
            if time.monotonic() - done_at[0] > 120:
                return "not settled after 120 s"
        return None

    writer = threading.Thread(target=load, daemon=True)

    def on_ready(_: dict[str, str]) -> None:
        writer.start()

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    with Runtime(load_project(path), state_url=state) as rt:
        run = StreamingRun(
            rt, "app_shop", on_batch=on_batch, should_stop=should_stop, on_ready=on_ready
        )
        journal = run._journal

        def timed_journal(echoes: Any) -> int:
            # the loop's journaling between batches: part of what a batch costs it
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return journal(echoes)
            finally:
                spent["journal_ms"] += (time.perf_counter() - t0) * 1000
                spent["journal_cpu_ms"] += (time.thread_time() - c0) * 1000

        run._journal = timed_journal  # type: ignore[method-assign]
        cpu0, proc0 = time.thread_time(), time.process_time()
        if prof is not None:
            prof.enable()
        reason = run.run()
        loop_cpu_s = time.thread_time() - cpu0
        proc_cpu_s = time.process_time() - proc0  # the readers' and the writer's threads too
        if prof is not None:
            prof.disable()
    stop.set()
    with psycopg.connect(pg_root, autocommit=True) as c:  # slots are server-wide
        c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s",
            (name,),
        )
    drain_s = (done_at[0] and time.monotonic() - done_at[0]) or 0.0
    if prof is not None:
        import io
        import pstats

        dump = os.environ.get("BATCH_COST_PROFILE_OUT")
        if dump:
            prof.dump_stats(dump)
        top = int(os.environ.get("BATCH_COST_PROFILE_TOP", "40"))
        for key in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
            print(buf.getvalue(), file=sys.stderr)
    cost = [b["ms"] + b["journal_ms"] for b in batches]
    ms = sorted(cost)
    changes = sum(b["taken"] for b in batches)
    out: dict[str, Any] = {
        "reason": reason,
        "sent": sent[0],
        "achieved_per_s": sent[0] / t_load[0] if t_load[0] else 0.0,
        "batches": len(batches),
        "changes": changes,
        "per_batch": statistics.median(b["taken"] for b in batches) if batches else 0,
        "batch_ms_p50": statistics.median(ms) if ms else 0.0,
        "batch_ms_p95": ms[int(0.95 * (len(ms) - 1))] if ms else 0.0,
        "ms_per_change": sum(ms) / changes if changes else 0.0,
        "loop_cpu_ms_per_change": loop_cpu_s * 1000 / changes if changes else 0.0,
        "process_cpu_ms_per_change": proc_cpu_s * 1000 / changes if changes else 0.0,
        "drain_s": drain_s,
        "settled": reason == "settled",
    }
    if burst:
        # a burst's cost: the batches (and journaling) that applied it, summed
        per: dict[int, float] = {}
        for b, c in zip(batches, cost, strict=True):
            if b["burst"]:
                per[int(b["burst"])] = per.get(int(b["burst"]), 0.0) + c
        costs = sorted(per.values())
        out["burst_ms_p50"] = statistics.median(costs) if costs else 0.0
        out["burst_ms_max"] = costs[-1] if costs else 0.0
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20, help="how long the writer offers load")
    ap.add_argument("--rate", type=float, default=1000, help="the writer's UPDATEs per second")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--baseline", help="git revision to compare against (interleaved)")
    ap.add_argument("--profile", action="store_true", help="this checkout once, under cProfile")
    ap.add_argument("--burst", type=int, default=0, help="bursts of N changes instead of a rate")
    ap.add_argument("--bursts", type=int, default=15, help="how many bursts (with --burst)")
    ap.add_argument("--child", nargs=9, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        code, pg_root, my_root, work, seconds, rate, profile, burst, bursts = args.child
        child(
            code,
            pg_root,
            my_root,
            work,
            float(seconds),
            float(rate),
            profile == "1",
            int(burst),
            int(bursts),
        )
        return

    sys.path.insert(0, str(REPO))
    from syncswim_lib.sandbox.servers import MariaDBServer, PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="syncswim-bench-"))
    versions = {"this": str(REPO)}
    if args.baseline and not args.profile:
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        versions = {"baseline": str(base), "this": str(REPO)}
    reps = 1 if args.profile else args.reps
    pg, my = PostgresServer(tmp / "pg"), MariaDBServer(tmp / "my")
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in versions}
    failed = False
    try:
        pg.start()
        my.start()
        print(
            f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
            f"load {os.getloadavg()[0]:.2f} at start; python {platform.python_version()}; "
            f"{args.rate:.0f} UPDATEs/s for {args.seconds:.0f} s, {reps} reps; "
            f"baseline {args.baseline or '-'}",
            flush=True,
        )
        for rep in range(reps):
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
                        str(tmp),
                        str(args.seconds),
                        str(args.rate),
                        "1" if args.profile else "0",
                        str(args.burst),
                        str(args.bursts),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    env={**os.environ, "PYTHONPATH": versions[v]},
                )
                if args.profile:
                    print(proc.stderr[-60000:])
                if proc.returncode != 0:
                    raise SystemExit(f"{v} failed:\n{proc.stderr[-3000:]}")
                sample = json.loads(proc.stdout.strip().splitlines()[-1])
                failed = failed or not sample["settled"]
                results[v].append(sample)
                print(
                    f"rep {rep + 1} {v} (load {os.getloadavg()[0]:.2f}): "
                    + json.dumps(
                        {k: round(x, 2) if isinstance(x, float) else x for k, x in sample.items()}
                    ),
                    flush=True,
                )
    finally:
        my.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load {os.getloadavg()[0]:.2f} at end")
    print()
    print(
        "| code | batches | changes/batch | batch p50 ms | batch p95 ms | ms/change"
        " | loop CPU ms/change | burst p50 ms | drain s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for v, samples in results.items():

        def med(k: str, samples: list[dict[str, Any]] = samples) -> float:
            return statistics.median(s.get(k, 0.0) for s in samples)

        print(
            f"| {v} | {med('batches'):.0f} | {med('per_batch'):.0f} | {med('batch_ms_p50'):.1f} |"
            f" {med('batch_ms_p95'):.1f} | {med('ms_per_change'):.3f} |"
            f" {med('loop_cpu_ms_per_change'):.3f} | {med('burst_ms_p50'):.1f} |"
            f" {med('drain_s'):.1f} |"
        )
    if failed:
        raise SystemExit("a run did not settle: the copies differ")


if __name__ == "__main__":
    main()
