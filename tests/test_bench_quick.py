"""`bench/throughput.py --quick` in the suite: every step leaves two identical copies.

A smoke run of the throughput benchmark (small table, few changes, no baselines) on its
own private servers. It asserts correctness, not speed: the command exits 0, and the JSON
it writes holds every measurement of both directions with the copies compared identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
STEPS = [
    "initial",
    "noop",
    "full_equal",
    "sustained_autocommit",
    "sustained_transactions",
    "sustained_inserts",
    "final",
]


def test_throughput_quick_copies_identical(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout[-4000:], proc.stderr[-4000:])
    data = json.loads(out.read_text())
    assert data["ok"] is True
    assert data["missing"] == [] and data["errors"] == []
    got = {(m["direction"], m["step"]): m for m in data["measurements"]}
    for direction in ("pg_to_my", "my_to_pg"):
        for step in STEPS:
            m = got.get((direction, step))
            assert m is not None, f"{direction} {step} not measured"
            assert m["identical"] is True, (direction, step, m.get("detail"))
            assert m.get("failed", 0) == 0, (direction, step)
        initial = got[(direction, "initial")]
        assert initial["writes"] == initial["rows"] == data["settings"]["rows"]
        for shape in ("autocommit", "transactions", "inserts"):
            sustained = got[(direction, f"sustained_{shape}")]
            assert sustained["changes"] == data["settings"]["changes"]
            assert sustained["writes"] >= sustained["changes"]
    assert all(m["contender"] == "ours" for m in data["measurements"])
