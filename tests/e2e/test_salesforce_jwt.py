"""PostgreSQL ⇄ the Salesforce emulator with the endpoint logging in by OAuth JWT bearer:
a sync runs, an expired session in the middle of a runtime is renewed by a new assertion,
and live `validate` names a missing key variable or an unreadable key file."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.cli_validate import run_validate
from syncswim_lib.pipeline.run import run_sync
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator
from tests.connectors.salesforce.conftest import SCHEMA
from tests.connectors.salesforce.test_salesforce_connector import PEM
from tests.e2e.test_salesforce_sync import SYNC, Sides

pytestmark = pytest.mark.integration

JWT = """    username: integration@syncswim.emulator
    consumer_key: syncswim-emulator-key
    private_key: {env: SFE_SF_KEY}
    login_url: {env: SFE_SF_URL}
"""


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
    token = "    token: {env: SFE_SF_TOKEN}\n"
    assert token in text
    sides.yaml.write_text(text.replace(token, JWT))
    for k, v in {**sides.env, "SFE_SF_KEY": PEM}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SFE_SF_TOKEN")  # the JWT login is the only way in
    yield sides
    sides.close()


def test_a_sync_runs_with_jwt_and_renews_an_expired_session(s: Sides) -> None:
    logins = "/services/oauth2/token"
    with Runtime(load_project(s.yaml)) as rt:
        run_sync(rt, SYNC)
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('J1', 'jwt one')")
        [customers, _] = run_sync(rt, SYNC)
        assert customers.side("crm").inserted == 1
        assert len(s.emu.control.requests(logins)) == 1
        s.emu.control.revoke(user="integration")  # the session expires between two runs
        s.pg.execute("INSERT INTO customers (code, name) VALUES ('J2', 'jwt two')")
        s.human.Account.create({"Name": "by hand", "Code__c": "H1"})
        [customers, _] = run_sync(rt, SYNC)  # capture (CometD) and writes renew it
        assert customers.side("crm").inserted == 1 and customers.side("app").inserted == 1
        assert len(s.emu.control.requests(logins)) == 2
    assert sorted(s.accounts()) == ["H1", "J1", "J2"]
    assert sorted(r["code"] for r in s.pg_rows("customers")) == ["H1", "J1", "J2"]
    s.settled()


def test_live_validate_names_a_missing_key_variable_and_an_unreadable_key(
    s: Sides, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) == 0, err.getvalue()
    monkeypatch.delenv("SFE_SF_KEY")
    err = io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) != 0
    assert "environment variable SFE_SF_KEY is not set" in err.getvalue()
    assert "endpoints.crm.private_key" in err.getvalue()
    missing = tmp_path / "nowhere" / "sf.key"
    s.yaml.write_text(
        s.yaml.read_text().replace("private_key: {env: SFE_SF_KEY}", f"private_key_file: {missing}")
    )
    err = io.StringIO()
    assert run_validate(str(s.yaml), live=True, out=out, err=err) != 0
    assert "endpoints.crm.private_key_file: the private key file" in err.getvalue()
    assert "cannot be read: No such file or directory" in err.getvalue()
