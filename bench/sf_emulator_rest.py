"""Single-record REST throughput of the Salesforce emulator: what users see, and its capacity.

The emulator runs in a child process. Two client modes loop create → get → update on
Account for a fixed time (and at most a fixed number of calls); only 127.0.0.1 is contacted.

* simple-salesforce: N threads in this process, each with its own keep-alive
  `requests.Session` — what the connectors and tests run. One Python process spends
  about 2 ms of CPU per call here, so this mode measures the client as much as the server.
* raw: N client *processes*, each with one reused TLS connection (http.client) sending the
  same requests, headers and bodies as simple-salesforce. The client is then cheap and
  parallel, so the rate shows what the emulator itself can serve.

    .venv/bin/python bench/sf_emulator_rest.py [--seconds 5] [--clients 1 2 4] [--mode both]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import queue
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

TARGET_CALLS_PER_S = 500.0
MAX_SECONDS = 60.0  # hard bound per run, whatever the command line says
OPS = ("create", "get", "update")
API = "/services/data/v62.0"
Samples = dict[str, list[float]]

# The child prints one JSON line with the connection details, then serves until stdin closes.
_CHILD = """
import json, sys
from syncswim_lib.sandbox.salesforce.emulator import start_emulator
handle = start_emulator(api_limit=10**9)  # the default daily budget (15000) ends a run
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

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Run:
    mode: str  # "sf" or "raw"
    clients: int  # threads (sf) or processes (raw)
    seconds: float
    samples: Samples  # latency in seconds, per op
    client_cpu_s: float
    server_cpu_s: float

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.samples.values())

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / max(self.calls, 1)


@contextlib.contextmanager
def emulator_process(start_timeout: float = 60.0) -> Iterator[Endpoint]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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


def process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rounds(seconds: float, max_rounds: int, step: Callable[[int], tuple[float, ...]]) -> Samples:
    """Call step(n) until time or count runs out; step returns one latency per op."""
    samples: Samples = {op: [] for op in OPS}
    deadline = time.perf_counter() + seconds
    n = 0
    while n < max_rounds and time.perf_counter() < deadline:
        for op, latency in zip(OPS, step(n), strict=True):
            samples[op].append(latency)
        n += 1
    return samples


# --- simple-salesforce mode: threads in this process -----------------------------------------
def sf_worker(
    endpoint: Endpoint,
    seconds: float,
    max_rounds: int,
    out: list[Samples],
    start: threading.Barrier,
) -> None:
    session = requests.Session()
    session.verify = endpoint.ca_path
    session.trust_env = False  # a machine-wide REQUESTS_CA_BUNDLE would override verify
    sf = Salesforce(
        instance_url=endpoint.url, session_id=endpoint.token, version="62.0", session=session
    )
    account = cast(SFType, sf.Account)
    try:
        account.describe()  # open the keep-alive connection before the clock starts
    except Exception:
        start.abort()  # the parent stops waiting; this thread's traceback says why
        raise

    def timed(n: int) -> tuple[float, ...]:
        t0 = time.perf_counter()
        record_id = account.create({"Name": f"bench {n}"})["id"]
        t1 = time.perf_counter()
        account.get(record_id)
        t2 = time.perf_counter()
        account.update(record_id, {"Description": f"round {n}"})
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    start.wait()
    out.append(rounds(seconds, max_rounds, timed))
    session.close()


def run_sf(endpoint: Endpoint, threads: int, seconds: float, max_calls: int) -> Run:
    results: list[Samples] = []
    barrier = threading.Barrier(threads + 1)
    max_rounds = max(1, max_calls // (len(OPS) * threads))
    pool = [
        threading.Thread(target=sf_worker, args=(endpoint, seconds, max_rounds, results, barrier))
        for _ in range(threads)
    ]
    for thread in pool:
        thread.start()
    try:
        barrier.wait(120)
    except threading.BrokenBarrierError:
        raise RuntimeError("a simple-salesforce client thread failed to start") from None
    began, client_cpu = time.perf_counter(), time.process_time()
    server_cpu = process_cpu(endpoint.pid)
    for thread in pool:
        thread.join(seconds + 30)
    elapsed = time.perf_counter() - began
    if len(results) != threads:
        raise RuntimeError("a simple-salesforce client thread failed mid-run")
    merged = {op: [s for r in results for s in r[op]] for op in OPS}
    return Run(
        "sf",
        threads,
        elapsed,
        merged,
        time.process_time() - client_cpu,
        process_cpu(endpoint.pid) - server_cpu,
    )


# --- raw mode: processes, one reused TLS connection each ---------------------------------------
def sf_headers(token: str) -> dict[str, str]:
    """What simple-salesforce sends through requests: session defaults plus its own three."""
    headers = dict(requests.utils.default_headers())
    headers.update(
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            "X-PrettyPrint": "1",
        }
    )
    return headers


def raw_worker(
    endpoint: Endpoint,
    headers: dict[str, str],
    seconds: float,
    max_rounds: int,
    start: Any,
    out: Any,
) -> None:
    context = ssl.create_default_context(cafile=endpoint.ca_path)
    conn = http.client.HTTPSConnection("127.0.0.1", endpoint.port, context=context, timeout=30)
    base = f"{API}/sobjects/Account/"

    def call(method: str, path: str, expect: int, payload: Any = None) -> bytes:
        # As requests/urllib3 2 put it on the wire: Host, the session's and
        # simple-salesforce's headers, Content-Length last; the body in a write of its own.
        body = json.dumps(payload).encode() if payload is not None else None
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None:
            conn.send(body)
        response = conn.getresponse()
        data = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return data

    def timed(n: int) -> tuple[float, ...]:
        t0 = time.perf_counter()
        record_id = json.loads(call("POST", base, 201, {"Name": f"bench {n}"}))["id"]
        t1 = time.perf_counter()
        call("GET", base + record_id, 200)
        t2 = time.perf_counter()
        call("PATCH", base + record_id, 204, {"Description": f"round {n}"})
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    try:
        call("GET", f"{base}describe", 200)  # handshake before the clock starts
        start.wait(60)
        cpu = time.process_time()
        samples = rounds(seconds, max_rounds, timed)
        out.put((samples, time.process_time() - cpu, ""))
    except Exception as exc:  # report, do not hang the parent on a missing result
        start.abort()
        out.put(({op: [] for op in OPS}, 0.0, repr(exc)))
    finally:
        conn.close()


def run_raw(endpoint: Endpoint, procs: int, seconds: float, max_calls: int) -> Run:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
    max_rounds = max(1, max_calls // (len(OPS) * procs))
    args = (endpoint, sf_headers(endpoint.token), seconds, max_rounds, barrier, out)
    pool = [ctx.Process(target=raw_worker, args=args, daemon=True) for _ in range(procs)]
    for proc in pool:
        proc.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(120)  # broken: a client failed to start, its error is on the queue
    began, server_cpu = time.perf_counter(), process_cpu(endpoint.pid)
    results = []
    try:
        for _ in pool:
            results.append(out.get(timeout=seconds + 60))
    except queue.Empty:
        raise RuntimeError("a raw client process did not report in time") from None
    finally:
        elapsed = time.perf_counter() - began
        server_cpu = process_cpu(endpoint.pid) - server_cpu
        for proc in pool:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    errors = [err for _, _, err in results if err]
    if errors:
        raise RuntimeError(f"raw client failed: {errors[0]}")
    merged = {op: [s for r in results for s in r[0][op]] for op in OPS}
    return Run("raw", procs, elapsed, merged, sum(r[1] for r in results), server_cpu)


# --- report --------------------------------------------------------------------------------------
def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        model = names[0] if names else model
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def load() -> str:
    one, five, fifteen = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000 if ordered else 0.0


def detail(run: Run) -> list[str]:
    unit = "threads" if run.mode == "sf" else "procs"
    rows = []
    for op in OPS:
        s = run.samples[op]
        rows.append(
            f"  {run.clients:>2} {unit:<7} {op:>7} {len(s):>7} {len(s) / run.seconds:>8.0f}"
            f" {percentile(s, 0.5):>7.2f} {percentile(s, 0.99):>7.2f}"
        )
    return rows


def summary(sf: dict[int, Run], raw: dict[int, Run]) -> list[str]:
    def cell(run: Run | None) -> str:
        if run is None:
            return f"{'-':>8} {'-':>7} {'-':>8} {'-':>8}"
        return (
            f"{run.per_second:>8.0f} {run.per_second / TARGET_CALLS_PER_S:>6.2f}x "
            f"{run.cpu_ms(run.client_cpu_s):>8.2f} {run.cpu_ms(run.server_cpu_s):>8.2f}"
        )

    head = f"{'calls/s':>8} {'vs 500':>7} {'cli ms':>8} {'emu ms':>8}"
    lines = [
        f"{'':>7} | {'simple-salesforce (threads)':^34} | {'raw keep-alive (processes)':^34}",
        f"{'clients':>7} | {head} | {head}",
    ]
    for n in sorted(set(sf) | set(raw)):
        lines.append(f"{n:>7} | {cell(sf.get(n))} | {cell(raw.get(n))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument(
        "--clients",
        "--threads",  # the option's earlier name
        dest="clients",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="client counts: threads (simple-salesforce) and processes (raw), 1-32",
    )
    parser.add_argument(
        "--mode", choices=("both", "sf", "raw"), default="both", help="client modes to run"
    )
    parser.add_argument("--max-calls", type=int, default=200_000, help="per run")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.5), MAX_SECONDS)
    clients = [min(max(n, 1), 32) for n in args.clients]
    print(f"machine: {machine()}")
    print(f"load average at start: {load()}")
    print(
        f"emulator in a child process; {seconds:.1f} s per run; target "
        f"{TARGET_CALLS_PER_S:.0f} single-record calls/s (create+get+update mix)"
    )
    sf: dict[int, Run] = {}
    raw: dict[int, Run] = {}
    with emulator_process() as endpoint:
        for n in clients:
            if args.mode in ("both", "sf"):
                sf[n] = run_sf(endpoint, n, seconds, args.max_calls)
            if args.mode in ("both", "raw"):
                raw[n] = run_raw(endpoint, n, seconds, args.max_calls)
    print(f"load average at end:   {load()}")
    print()
    print(f"  {'clients':<10} {'op':>7} {'calls':>7} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for run in [*sf.values(), *raw.values()]:
        print("\n".join(detail(run)))
    print()
    print("\n".join(summary(sf, raw)))
    print()
    print("calls/s counts every call (create+get+update). cli/emu ms: CPU per call of the")
    print("client side (all its threads or processes) and of the emulator process.")
    best = max((r.per_second for r in raw.values()), default=0.0)
    if raw:
        verdict = "meets" if best >= TARGET_CALLS_PER_S else "MISSES"
        print(
            f"emulator (raw mode) peak {best:.0f} calls/s: {verdict} the "
            f"{TARGET_CALLS_PER_S:.0f} calls/s target ({best / TARGET_CALLS_PER_S:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
