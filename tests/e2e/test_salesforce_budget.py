"""The API budget end to end (PostgreSQL ⇄ the Salesforce emulator through `run_sync`):
with the org's count past the endpoint's api_budget_share the run writes nothing to the
org and fails naming the budget, the changes stay in the journal, and the run after the
count fell back writes each of them once; every run's API calls and the org's count are
in its report and the materialisation metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncswim_defs.metadata import report_metadata
from syncswim_lib.errors import RetriableError
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA
from tests.e2e.test_salesforce_sync import Sides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


@pytest.fixture
def s(
    pg_dsn: str, _emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sides]:
    _emulator.control.reset()
    sides = Sides(pg_dsn, _emulator, tmp_path)
    text = sides.yaml.read_text()
    shared = "    ca_bundle: {env: SFE_SF_CA}\n"
    assert shared in text
    sides.yaml.write_text(text.replace(shared, shared + "    api_budget_share: 0.5\n"))
    for k, v in sides.env.items():
        monkeypatch.setenv(k, v)
    yield sides
    sides.close()


def test_past_the_budget_share_nothing_is_written_and_a_later_run_resumes(s: Sides) -> None:
    first = s.run()["customers"]
    usage = first.api_usage["crm"]
    assert usage["calls"] and usage["calls"] > 0 and usage["limit"] == 15_000
    meta = report_metadata(first)
    assert meta["crm/api_calls"] == usage["calls"]
    assert meta["crm/api_usage"] == f"{usage['used']}/{usage['limit']}"
    assert "app/api_calls" not in meta  # PostgreSQL does not meter calls

    s.pg.execute(
        "INSERT INTO customers (code, name) SELECT 'R' || g, 'n' || g FROM generate_series(1, 5) g"
    )
    s.emu.control.set_usage(used=7_600, limit=15_000)  # past half
    with pytest.raises(RetriableError, match=r"api_budget_share: 0\.5"):
        s.run()
    writes = [
        r
        for r in s.emu.control.requests()
        if "/composite/" in r["path"] or "/jobs/ingest" in r["path"]
    ]
    assert writes == [] and s.accounts() == {}

    s.emu.control.set_usage(used=100, limit=15_000)  # the rolling count fell back
    resumed = s.run()["customers"]
    assert resumed.side("crm").inserted == 5
    assert sorted(s.accounts()) == [f"R{i}" for i in range(1, 6)]
    assert s.human.query("SELECT COUNT() FROM Account")["totalSize"] == 5
    assert resumed.api_usage["crm"]["used"] is not None
    s.settled()
