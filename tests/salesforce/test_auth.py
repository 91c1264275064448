"""Sessions, users and the login flows simple-salesforce uses (spec §0, §6)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from syncswim_lib.sandbox.salesforce.auth import DEFAULT_APP
from syncswim_lib.sandbox.salesforce.emulator import Emulator
from tests.salesforce.conftest import make_client

pytestmark = pytest.mark.salesforce


def headers(emu: Emulator) -> list[dict[str, Any]]:
    return [e["data"]["payload"]["ChangeEventHeader"] for e in emu.bus.all_events()]


def test_bad_token_is_401_invalid_session(sf_emulator: Emulator) -> None:
    sf = Salesforce(instance_url=sf_emulator.url, session_id="00Dbogus!AQ", version="62.0")
    sf.session.verify, sf.session.trust_env = str(sf_emulator.ca_path), False
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.status == 401
    assert exc.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_revoked_token_and_new_token(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf.query("SELECT Id FROM Account")
    assert sf_emulator.control.revoke(user="integration") >= 1
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Account")
    fresh = make_client(sf_emulator)  # emu.token() issues a new one after revocation
    assert fresh.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_users_are_distinct_and_origin_reaches_events(
    sf_emulator: Emulator, sf_human: Salesforce
) -> None:
    tool = make_client(sf_emulator, origin="SyncSwim")
    rid = cast(SFType, tool.Account).create({"Name": "x"})["id"]
    cast(SFType, sf_human.Account).update(rid, {"Name": "y"})
    sf_emulator.control.human_update("Account", rid, {"Name": "z"})
    h = headers(sf_emulator)
    users = sf_emulator.users
    assert users["integration"].user_id != users["human"].user_id
    assert h[0]["changeOrigin"] == "com/salesforce/api/rest/62.0;client=SyncSwim"
    assert h[0]["commitUser"] == users["integration"].user_id
    assert h[1]["changeOrigin"] == "com/salesforce/api/rest/62.0"  # a human via the API
    assert h[2]["changeOrigin"] == ""  # a UI edit: not made through an API
    assert h[1]["commitUser"] == h[2]["commitUser"] == users["human"].user_id
    log = sf_emulator.control.requests(path="/sobjects/Account", method="POST")
    assert log[-1]["headers"]["sforce-call-options"] == "client=SyncSwim"
    assert "authorization" in log[-1]["headers"]


def test_control_created_user(sf_emulator: Emulator) -> None:
    info = sf_emulator.control.create_user("ops", "Olga", "Ops", human=True)
    client = make_client(sf_emulator, user="ops")
    rid = cast(SFType, client.Account).create({"Name": "by ops"})["id"]
    rec = cast(SFType, client.Account).get(rid)
    assert rec["CreatedById"] == info["user_id"] == rec["OwnerId"]
    rows = client.query(f"SELECT Owner.Name FROM Account WHERE Id = '{rid}'")["records"]
    assert rows[0]["Owner"]["Name"] == "Olga Ops"


def test_oauth_password_flow(sf_emulator: Emulator) -> None:
    user = sf_emulator.users["integration"]
    sf = Salesforce(
        username=user.username,
        password=user.password,
        consumer_key=DEFAULT_APP.consumer_key,
        consumer_secret=DEFAULT_APP.consumer_secret,
        session=sf_emulator.login_session(),
        version="62.0",
    )
    assert sf.sf_instance == f"127.0.0.1:{sf_emulator.port}"
    cast(SFType, sf.Account).create({"Name": "oauth"})
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(
            username=user.username,
            password="wrong",
            consumer_key=DEFAULT_APP.consumer_key,
            consumer_secret=DEFAULT_APP.consumer_secret,
            session=sf_emulator.login_session(),
        )
    assert exc.value.code == "invalid_grant"


def test_oauth_client_credentials(sf_emulator: Emulator) -> None:
    sf = Salesforce(
        consumer_key=DEFAULT_APP.consumer_key,
        consumer_secret=DEFAULT_APP.consumer_secret,
        domain="acme.my",
        session=sf_emulator.login_session(),
        version="62.0",
    )
    rid = cast(SFType, sf.Account).create({"Name": "cc"})["id"]
    assert (
        cast(SFType, sf.Account).get(rid)["CreatedById"] == sf_emulator.users["integration"].user_id
    )
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(
            consumer_key=DEFAULT_APP.consumer_key,
            consumer_secret="nope",
            domain="acme.my",
            session=sf_emulator.login_session(),
        )


def test_oauth_jwt_bearer(sf_emulator: Emulator) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    sf = Salesforce(
        username=sf_emulator.users["human"].username,
        consumer_key=DEFAULT_APP.consumer_key,
        privatekey=pem,
        session=sf_emulator.login_session(),
        version="62.0",
    )
    rid = cast(SFType, sf.Account).create({"Name": "jwt"})["id"]
    assert cast(SFType, sf.Account).get(rid)["CreatedById"] == sf_emulator.users["human"].user_id


def test_soap_login_and_refresh_on_expiry(sf_emulator: Emulator) -> None:
    user = sf_emulator.users["integration"]
    sf = Salesforce(
        username=user.username,
        password=user.password,
        security_token=user.security_token,
        session=sf_emulator.login_session(),
        version="62.0",
    )
    sf.query("SELECT Id FROM Account")
    sf_emulator.control.revoke(token=sf.session_id)
    # login-based clients re-login on INVALID_SESSION_ID and retry
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(
            username=user.username,
            password="bad",
            security_token="x",
            session=sf_emulator.login_session(),
        )
    assert exc.value.code == "INVALID_LOGIN"
