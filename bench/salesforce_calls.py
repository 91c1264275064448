"""API calls of a large PostgreSQL → Salesforce sync, counted from the emulator's request log.

The scenario of tests/e2e/test_salesforce_volume.py at the issue's size: `--per-table`
customers and as many contacts (each under its customer: the lookup translated, parents
first) in a private PostgreSQL (the sandbox server, in a temporary folder), an initial
`full` sync into an empty emulator org, then half of each table changed and a run. Prints
the machine, then for the load and for the changes: the calls (everything under
/services/data, what an org charges to its daily allowance), the calls per 1,000 records,
the write calls (Bulk API 2.0 jobs, collections) and read calls (describes, SOQL,
retrieves) apart, and the calls by kind (tests/e2e/test_salesforce_volume.py `kind_of`).
Everything started is stopped on exit, Ctrl-C and errors.

    .venv/bin/python bench/salesforce_calls.py [--per-table 10000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncswim_lib.sandbox.salesforce.emulator import start_emulator  # noqa: E402
from syncswim_lib.sandbox.servers import PostgresServer  # noqa: E402
from tests.connectors.salesforce.conftest import SCHEMA  # noqa: E402
from tests.e2e.test_salesforce_volume import environment, measure  # noqa: E402


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({model or 'unknown model'}), "
        f"load average {load}; python {platform.python_version()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-table", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5_000, help="the sync's batch_size")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="syncswim-bench-"))
    server = PostgresServer(tmp / "pg")
    emu = None
    try:
        server.start()
        emu = start_emulator(schema=SCHEMA)
        print(f"machine: {machine()}", flush=True)
        os.environ.update(environment(server.dsn, emu, tmp))
        got = measure(server.dsn, emu, tmp, args.per_table, args.batch)
        for name, records, calls, writes, seconds, kinds in (
            ("load", got.records, got.load_calls, got.load_writes, got.load_s, got.load_kinds),
            (
                "changes",
                got.changed,
                got.change_calls,
                got.change_writes,
                got.change_s,
                got.change_kinds,
            ),
        ):
            per = calls * 1000 / records
            w = len(writes)
            print(
                f"{name}: {records} records, {calls} calls ({per:.2f} per 1,000 records): "
                f"{w} writes ({w * 1000 / records:.2f} per 1,000), {calls - w} reads "
                f"({(calls - w) * 1000 / records:.2f} per 1,000); {seconds:.1f} s",
                flush=True,
            )
            print(f"  by kind: {', '.join(f'{k} {n}' for k, n in kinds.items())}", flush=True)
        print(f"machine after: {machine()}", flush=True)
    finally:
        if emu is not None:
            emu.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
