"""The emulator (in its own process) serves >= 500 single-record REST calls/s on keep-alive.

Wall-clock rates swing with whatever else the machine runs (the sequential `requests`
client alone costs ~1.5 ms a call), so the assertion is on the server's own CPU time per
call, read from /proc: 500 calls must cost it under 1 s of CPU (>= 500 calls/s per core).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

from tests.salesforce.test_durability import read_banner, serve

pytestmark = [pytest.mark.salesforce, pytest.mark.slow]
CALLS = 500


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_single_record_calls_per_second() -> None:
    proc = serve()
    try:
        info = read_banner(proc)
        session = requests.Session()
        session.verify, session.trust_env = info["ca_path"], False
        sf = Salesforce(
            instance_url=info["url"],
            session_id=info["tokens"]["integration"],
            version="62.0",
            session=session,
        )
        accounts = cast(SFType, sf.Account)
        rid = accounts.create({"Name": "hot"})["id"]
        for _ in range(50):  # warm up the connection and the code paths
            accounts.get(rid)
        calls: dict[str, Callable[[int], object]] = {
            "get": lambda i: accounts.get(rid),
            "update": lambda i: accounts.update(rid, {"Name": f"hot {i}"}),
            "create": lambda i: accounts.create({"Name": f"n{i}"}),
        }
        capacity, wall = {}, {}
        for name, call in calls.items():
            cpu0, started = cpu_seconds(proc.pid), time.perf_counter()
            for i in range(CALLS):
                call(i)
            wall[name] = round(CALLS / (time.perf_counter() - started))
            capacity[name] = round(CALLS / max(cpu_seconds(proc.pid) - cpu0, 1e-3))
        assert min(capacity.values()) >= 500, f"server calls/s per core {capacity}, wall {wall}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
