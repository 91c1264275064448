"""With a data dir the org survives a restart; the CLI serves until SIGTERM (§7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceResourceNotFound

from syncswim_lib.sandbox.salesforce import ids
from syncswim_lib.sandbox.salesforce.emulator import start_emulator
from tests.salesforce.conftest import TEST_SCHEMA, make_client

pytestmark = pytest.mark.salesforce


def test_restart_keeps_everything(tmp_path: Path) -> None:
    emu = start_emulator(data_dir=tmp_path, schema=TEST_SCHEMA)
    sf = make_client(emu)
    acc = cast(SFType, sf.Account).create({"Name": "Keep", "ExtId__c": "K"})["id"]
    kid = cast(SFType, sf.Contact).create({"LastName": "Kid", "AccountId": acc})["id"]
    gone = cast(SFType, sf.Account).create({"Name": "Binned"})["id"]
    cast(SFType, sf.Account).delete(gone)
    emu.control.add_objects([{"name": "Later__c", "fields": [{"name": "N__c", "type": "int"}]}])
    emu.control.create_user("ops", "Olga", "Ops")
    ops_token = emu.token("ops")
    old_token = emu.token("integration")
    emu.control.revoke(user="human")
    emu.stop()

    again = start_emulator(data_dir=tmp_path, schema=TEST_SCHEMA)
    try:
        assert again.ca_path == emu.ca_path
        sf2 = make_client(again)
        assert sf2.session_id == old_token
        assert cast(SFType, sf2.Account).get(acc)["Name"] == "Keep"
        assert cast(SFType, sf2.Contact).get(kid)["AccountId"] == acc
        with pytest.raises(SalesforceResourceNotFound) as exc:
            cast(SFType, sf2.Account).get(gone)
        assert exc.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
        again.control.undelete(gone)
        new = cast(SFType, sf2.Account).create({"Name": "New"})["id"]
        assert ids.decode_seq(new) > ids.decode_seq(gone)
        assert cast(SFType, sf2.Account).upsert("ExtId__c/K", {"Name": "K2"}) == 200
        assert cast(SFType, sf2.Later__c).create({"Name": "l", "N__c": 3})["success"]
        ops = Salesforce(instance_url=again.url, session_id=ops_token, version="62.0")
        ops.session.verify, ops.session.trust_env = str(again.ca_path), False
        assert ops.query("SELECT COUNT() FROM Account")["totalSize"] == 3
        assert "human" not in again.auth.tokens.values()  # its only token was revoked
        assert again.users["human"].user_id == emu.users["human"].user_id
        commit = again.org.commit_number
    finally:
        again.stop()
    third = start_emulator(data_dir=tmp_path, schema=TEST_SCHEMA)
    try:
        assert third.org.commit_number == commit
        assert make_client(third).query("SELECT COUNT() FROM Account")["totalSize"] == 3
    finally:
        third.stop()


def test_revoked_token_stays_revoked(tmp_path: Path) -> None:
    emu = start_emulator(data_dir=tmp_path)
    token = emu.token("human")
    emu.control.revoke(token=token)
    emu.stop()
    again = start_emulator(data_dir=tmp_path)
    try:
        sf = Salesforce(instance_url=again.url, session_id=token, version="62.0")
        sf.session.verify, sf.session.trust_env = str(again.ca_path), False
        with pytest.raises(SalesforceExpiredSession):
            sf.query("SELECT Id FROM Account")
    finally:
        again.stop()


def test_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    emu = start_emulator(data_dir=tmp_path)
    rid = cast(SFType, make_client(emu).Account).create({"Name": "ok"})["id"]
    emu.stop()
    with (tmp_path / "org-journal.jsonl").open("a") as fh:
        fh.write('{"k":"tx","n":99,"puts":{"001')  # a crash mid-write
    again = start_emulator(data_dir=tmp_path)
    try:
        assert cast(SFType, make_client(again).Account).get(rid)["Name"] == "ok"
    finally:
        again.stop()


def read_banner(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip():
            return cast(dict[str, Any], json.loads(line))
        if proc.poll() is not None:
            break
    raise AssertionError("the emulator printed no banner")


def serve(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "syncswim_lib.sandbox.salesforce", "serve", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_serves_until_sigterm_and_persists(tmp_path: Path) -> None:
    proc = serve("--data-dir", str(tmp_path))
    try:
        info = read_banner(proc)
        assert info["url"].startswith("https://127.0.0.1:")
        assert set(info["tokens"]) >= {"integration", "human"}
        session = requests.Session()
        session.verify, session.trust_env = info["ca_path"], False
        sf = Salesforce(
            instance_url=info["url"],
            session_id=info["tokens"]["integration"],
            version="62.0",
            session=session,
        )
        rid = cast(SFType, sf.Account).create({"Name": "cli"})["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    proc = serve("--data-dir", str(tmp_path))
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
        assert cast(SFType, sf.Account).get(rid)["Name"] == "cli"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
