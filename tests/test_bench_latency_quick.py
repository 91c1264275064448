"""`bench/latency.py --quick` in the suite: the streaming run through `dagster dev` carries
every change of each direction and journals it with a detection time; with `--only
salesforce --sf-modes streaming`, the streaming run between PostgreSQL and the Salesforce
emulator carries every change of each direction (correctness, not speed: nothing is
compared with a target). The bench's Salesforce micro-batch rows are left out of the suite
for its time (a second `dagster dev` and sensor-paced samples, over a minute): the same
micro-batch path through the sensor is run by tests/e2e/test_demo.py (the CRM edit) and
tests/e2e/test_salesforce_sync.py (the Dagster asset)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def test_latency_quick_every_change_arrives(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "latency.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    assert "quick: every change arrived and was journaled" in proc.stdout
    data = json.loads(out.read_text())
    assert data["missing"] == []
    got = {(r["path"], r["direction"]): r["n"] for r in data["rows"]}
    for direction in ("app→shop", "shop→app"):
        for what in ("end to end", "detection"):
            assert got[(f"streaming, {what}", direction)] == 5


# servers and the emulator; `dagster dev` in streaming mode, two warm-ups and four
# sub-second samples
@pytest.mark.timeout(480)
def test_latency_quick_salesforce_every_change_arrives(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "latency.py"),
            "--quick",
            "--only",
            "salesforce",
            "--sf-modes",
            "streaming",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    assert "quick: every change arrived" in proc.stdout
    data = json.loads(out.read_text())
    assert data["missing"] == []
    got = {(r["path"], r["direction"]): r["n"] for r in data["rows"]}
    paths = (
        "streaming, Salesforce, end to end",
        "streaming, Salesforce, detection",
    )
    assert got == {(path, d): 2 for path in paths for d in ("app→crm", "crm→app")}
