"""Single-record REST throughput of the Salesforce emulator, through simple-salesforce.

The emulator runs in a child process so client and server do not share one GIL. Each client
thread has its own keep-alive `requests.Session` and loops create → get → update on Account
for a fixed time (and at most a fixed number of calls). Only 127.0.0.1 is contacted.

    .venv/bin/python bench/sf_emulator_rest.py [--seconds 5] [--threads 1 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

TARGET_CALLS_PER_S = 500.0
MAX_SECONDS = 60.0  # hard bound per configuration, whatever the command line says
OPS = ("create", "get", "update")

# The child prints one JSON line with the connection details, then serves until stdin closes.
_CHILD = """
import json, sys
from syncswim_lib.sandbox.salesforce.emulator import start_emulator
handle = start_emulator()
print(json.dumps({"url": handle.url, "ca": str(handle.ca_path), "token": handle.token()}),
      flush=True)
sys.stdin.read()
handle.stop()
"""


@dataclass(frozen=True)
class Endpoint:
    url: str
    ca_path: str
    token: str
    pid: int  # the emulator process, for its CPU time


@dataclass(frozen=True)
class Result:
    threads: int
    op: str
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float = 0.0  # CPU seconds used by this (client) process during the run
    server_cpu_s: float = 0.0  # CPU seconds used by the emulator process during the run

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


@contextmanager
def emulator_process(start_timeout: float = 60.0) -> Iterator[Endpoint]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = child.stdout
        assert stdout is not None
        ready: list[str] = []
        # readline() has no timeout: read in a helper thread and bound the wait.
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(start_timeout)
        if not ready or not ready[0]:
            raise RuntimeError("emulator child did not report its address in time")
        info = json.loads(ready[0])
        if not info["url"].startswith("https://127.0.0.1:"):
            raise RuntimeError(f"refusing to benchmark a non-local emulator: {info['url']}")
        yield Endpoint(info["url"], info["ca"], info["token"], child.pid)
    finally:
        if child.stdin:
            child.stdin.close()  # the child stops its emulator when stdin closes
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def client(endpoint: Endpoint) -> Salesforce:
    session = requests.Session()
    session.verify = endpoint.ca_path
    session.trust_env = False  # a machine-wide REQUESTS_CA_BUNDLE would override verify
    return Salesforce(
        instance_url=endpoint.url, session_id=endpoint.token, version="62.0", session=session
    )


def worker(
    endpoint: Endpoint,
    seconds: float,
    max_rounds: int,
    latencies: dict[str, list[float]],
    start: threading.Barrier,
) -> None:
    sf = client(endpoint)
    account = cast(SFType, sf.Account)
    account.describe()  # open the keep-alive connection before the clock starts
    start.wait()
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < max_rounds and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        record_id = account.create({"Name": f"bench {rounds}"})["id"]
        t1 = time.perf_counter()
        account.get(record_id)
        t2 = time.perf_counter()
        account.update(record_id, {"Description": f"round {rounds}"})
        t3 = time.perf_counter()
        latencies["create"].append(t1 - t0)
        latencies["get"].append(t2 - t1)
        latencies["update"].append(t3 - t2)
        rounds += 1
    sf.session.close()


def _percentile(samples: list[float], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] * 1000 if samples else 0.0


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(endpoint: Endpoint, threads: int, seconds: float, max_calls: int) -> list[Result]:
    per_thread: list[dict[str, list[float]]] = [{op: [] for op in OPS} for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    max_rounds = max(1, max_calls // (len(OPS) * threads))
    pool = [
        threading.Thread(target=worker, args=(endpoint, seconds, max_rounds, stats, barrier))
        for stats in per_thread
    ]
    for thread in pool:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    client_cpu, server_cpu = time.process_time(), process_cpu(endpoint.pid)
    for thread in pool:
        thread.join(seconds + 30)
    elapsed = time.perf_counter() - began
    client_cpu = time.process_time() - client_cpu
    server_cpu = process_cpu(endpoint.pid) - server_cpu
    results = []
    for op in OPS:
        samples = sorted(s for stats in per_thread for s in stats[op])
        results.append(
            Result(
                threads,
                op,
                len(samples),
                elapsed,
                _percentile(samples, 0.5),
                _percentile(samples, 0.99),
            )
        )
    total = sum(r.calls for r in results)
    results.append(Result(threads, "all", total, elapsed, 0.0, 0.0, client_cpu, server_cpu))
    return results


def format_row(result: Result) -> str:
    if result.op == "all":  # the mix has no single latency; say where the CPU went instead
        calls = max(result.calls, 1)
        cpu = (
            f"   (CPU per call: client {result.client_cpu_s * 1000 / calls:.2f} ms, "
            f"emulator {result.server_cpu_s * 1000 / calls:.2f} ms)"
        )
        middle = f"{'':>7} {'':>7}"
    else:
        cpu, middle = "", f"{result.p50_ms:7.2f} {result.p99_ms:7.2f}"
    ratio = result.per_second / TARGET_CALLS_PER_S
    return (
        f"{result.threads:>7} {result.op:>7} {result.calls:>8} {result.per_second:>9.0f} "
        f"{middle} {ratio:>8.2f}x{cpu}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-calls", type=int, default=200_000, help="per thread count")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.5), MAX_SECONDS)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; "
        f"load average {load[0]:.2f} at start"
    )
    print(f"emulator in a child process; {seconds:.1f} s per run; target {TARGET_CALLS_PER_S:.0f}")
    print(
        f"{'threads':>7} {'op':>7} {'calls':>8} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'vs target':>9}"
    )
    with emulator_process() as endpoint:
        for threads in args.threads:
            for result in run(endpoint, threads, seconds, args.max_calls):
                print(format_row(result))
    print("'all' counts every call (create+get+update) against the 500 calls/s target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
