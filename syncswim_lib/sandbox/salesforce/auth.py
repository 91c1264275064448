"""Users, session tokens, connected apps, the daily API budget, and the login endpoints."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from html import unescape
from typing import Any
from urllib.parse import parse_qs

from .contract import CallContext, Clock, Request, Response, Router
from .org import Journal, Org

SYSTEM_USER = "005000000000000AAA"  # stands in for Salesforce's Automated Process user


@dataclass(frozen=True)
class User:
    key: str  # short handle used by tests and the control plane ("integration", "human")
    user_id: str
    username: str
    password: str
    security_token: str
    human: bool


@dataclass(frozen=True)
class ConnectedApp:
    consumer_key: str
    consumer_secret: str
    run_as: str  # user key for the client-credentials flow


DEFAULT_USERS = (("integration", "Integration", "User", False), ("human", "Harriet", "Human", True))
DEFAULT_APP = ConnectedApp("syncswim-emulator-key", "syncswim-emulator-secret", "integration")


class ApiUsage:
    """Daily API request counter (resets when the org clock enters a new UTC day)."""

    def __init__(self, clock: Clock, limit: int = 15000) -> None:
        self.clock, self.limit, self.used = clock, limit, 0
        self._day: date | None = None
        self._lock = threading.Lock()

    def _roll(self) -> None:
        today = self.clock.now().date()
        if today != self._day:
            self._day, self.used = today, 0

    def charge(self) -> bool:
        with self._lock:
            self._roll()
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"

    def set(self, used: int | None = None, limit: int | None = None) -> None:
        with self._lock:
            self._roll()
            if used is not None:
                self.used = used
            if limit is not None:
                self.limit = limit

    def remaining(self) -> int:
        with self._lock:
            self._roll()
            return max(0, self.limit - self.used)


class Auth:
    def __init__(self, org: Org, journal: Journal | None = None) -> None:
        self.org, self.journal = org, journal
        self.base_url = ""
        self.users: dict[str, User] = {}
        self.tokens: dict[str, str] = {}  # token -> user key
        self.primary: dict[str, str] = {}  # user key -> the token handed to tests
        self.apps: dict[str, ConnectedApp] = {DEFAULT_APP.consumer_key: DEFAULT_APP}
        self._by_id: dict[str, User] = {}
        self._lock = threading.Lock()

    # --- registry -------------------------------------------------------------------------
    def _log(self, entry: Mapping[str, Any]) -> None:
        if self.journal is not None:
            self.journal.append(entry)

    def ensure_defaults(self) -> None:
        for key, first, last, human in DEFAULT_USERS:
            if key not in self.users:
                self.create_user(key, first, last, human=human)

    def create_user(
        self,
        key: str,
        first: str,
        last: str,
        human: bool = True,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> User:
        username = username or f"{key}@syncswim.emulator"
        with self.org.transaction(CallContext(SYSTEM_USER), publish=False):
            existing = self.org.find_ext("User", "Username", username)
            uid = (
                existing[0]
                if existing
                else self.org.create(
                    CallContext(SYSTEM_USER),
                    "User",
                    {
                        "Username": username,
                        "FirstName": first,
                        "LastName": last,
                        "Email": username,
                        "Alias": key[:8],
                    },
                )
            )
        user = User(key, uid, username, password or f"{key}-password", f"{key.upper()}TOKEN", human)
        self._add_user(user)
        self._log({"k": "user", "user": asdict(user)})
        self.issue_token(key, token)
        return user

    def _add_user(self, user: User) -> None:
        with self._lock:
            self.users[user.key] = user
            self._by_id[user.user_id] = user

    def issue_token(self, key: str, token: str | None = None) -> str:
        user = self.users[key]
        token = token or f"{self.org.org_id[:15]}!AQ{secrets.token_urlsafe(40)}"
        with self._lock:
            self.tokens[token] = user.key
            self.primary.setdefault(user.key, token)
        self._log({"k": "token", "user": key, "token": token})
        return token

    def revoke(self, token: str | None = None, user: str | None = None) -> int:
        with self._lock:
            doomed = [t for t, k in self.tokens.items() if t == token or k == user]
            for t in doomed:
                del self.tokens[t]
            for k, t in list(self.primary.items()):
                if t in doomed:
                    del self.primary[k]
        for t in doomed:
            self._log({"k": "revoke", "token": t})
        return len(doomed)

    def token(self, user: str = "integration") -> str:
        """The user's current token (a new one if every earlier token was revoked)."""
        tok = self.primary.get(user)
        return tok if tok is not None else self.issue_token(user)

    def user_by_id(self, user_id: str) -> User | None:
        return self._by_id.get(user_id)

    def context(self, token: str, origin: str = "", version: str = "62.0") -> CallContext | None:
        key = self.tokens.get(token)
        if key is None:
            return None
        return CallContext(self.users[key].user_id, origin, version)

    def context_for_user(self, key: str, origin: str = "", version: str = "62.0") -> CallContext:
        return CallContext(self.users[key].user_id, origin, version)

    # --- persistence ---------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "users": [asdict(u) for u in self.users.values()],
                "tokens": dict(self.tokens),
                "primary": dict(self.primary),
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        for u in state.get("users", []):
            self._add_user(User(**u))
        with self._lock:
            self.tokens.update(state.get("tokens", {}))
            self.primary.update(state.get("primary", {}))

    def replay(self, entry: Mapping[str, Any]) -> None:
        kind = entry["k"]
        if kind == "user":
            self._add_user(User(**entry["user"]))
        elif kind == "token":
            with self._lock:
                self.tokens[entry["token"]] = entry["user"]
                self.primary.setdefault(entry["user"], entry["token"])
        elif kind == "revoke":
            with self._lock:
                self.tokens.pop(entry["token"], None)
                for k, t in list(self.primary.items()):
                    if t == entry["token"]:
                        del self.primary[k]

    # --- login endpoints -----------------------------------------------------------------
    def _login(self, username: str, password: str) -> User | None:
        for u in self.users.values():
            if u.username.lower() == username.lower() and password in (
                u.password,
                u.password + u.security_token,
            ):
                return u
        return None

    def _token_body(self, user: User) -> dict[str, Any]:
        token = self.issue_token(user.key)
        issued = str(int(self.org.clock.now().timestamp() * 1000))
        return {
            "access_token": token,
            "instance_url": self.base_url,
            "id": f"https://login.salesforce.com/id/{self.org.org_id}/{user.user_id}",
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
        }

    def oauth_token(self, req: Request, _m: re.Match[str]) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8")).items()}
        grant = form.get("grant_type", "")
        key, secret = form.get("client_id"), form.get("client_secret")
        basic = req.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            key, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        app = self.apps.get(key or "")
        user: User | None = None
        if grant == "password":
            if app is None or app.consumer_secret != secret:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            user = self._login(form.get("username", ""), form.get("password", ""))
        elif grant == "client_credentials":
            if app is None or app.consumer_secret != secret:
                return _oauth_error("invalid_client", "invalid client credentials")
            user = self.users.get(app.run_as)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            if claims is None or claims.get("iss") not in self.apps:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            user = next(
                (
                    u
                    for u in self.users.values()
                    if u.username.lower() == str(claims.get("sub", "")).lower()
                ),
                None,
            )
        else:
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if user is None:
            return _oauth_error("invalid_grant", "authentication failure")
        return Response.of_json(200, self._token_body(user))

    def soap_login(self, req: Request, m: re.Match[str]) -> Response:
        text = req.body.decode("utf-8", "replace")
        username = _xml_value(text, "username")
        password = _xml_value(text, "password")
        user = self._login(username, password)
        if user is None:
            return Response(500, _SOAP_FAULT.encode(), {"Content-Type": "text/xml;charset=UTF-8"})
        token = self.issue_token(user.key)
        version = m.group("version")
        server_url = f"{self.base_url}/services/Soap/u/{version}/{self.org.org_id[:15]}"
        body = _SOAP_OK.format(
            server_url=server_url,
            session=token,
            user_id=user.user_id,
            org_id=self.org.org_id,
            username=user.username,
        )
        return Response(200, body.encode(), {"Content-Type": "text/xml;charset=UTF-8"})

    def oauth_revoke(self, req: Request, _m: re.Match[str]) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8")).items()}
        token = form.get("token") or (req.query.get("token") or [""])[0]
        self.revoke(token=token)
        return Response(200)


def _oauth_error(code: str, description: str) -> Response:
    return Response.of_json(400, {"error": code, "error_description": description})


def _xml_value(text: str, tag: str) -> str:
    m = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", text, re.DOTALL)
    return unescape(m.group(1)) if m else ""


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    # The signature is not checked: the emulator trusts any assertion for a known app.
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


_SOAP_OK = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\
<soapenv:Body><loginResponse><result><metadataServerUrl>{server_url}</metadataServerUrl>\
<passwordExpired>false</passwordExpired><sandbox>true</sandbox>\
<serverUrl>{server_url}</serverUrl><sessionId>{session}</sessionId><userId>{user_id}</userId>\
<userInfo><organizationId>{org_id}</organizationId><userId>{user_id}</userId>\
<userName>{username}</userName></userInfo></result></loginResponse></soapenv:Body>\
</soapenv:Envelope>"""

_SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:sf="urn:fault.partner.soap.sforce.com" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>\
<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, \
security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault">\
<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, \
password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>\
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"""


def register(router: Router, auth: Auth) -> None:
    router.add("POST", r"/services/oauth2/token", auth.oauth_token, auth=False)
    router.add("POST", r"/services/oauth2/revoke", auth.oauth_revoke, auth=False)
    router.add(
        "POST", r"/services/Soap/u/(?P<version>\d+\.\d)(?:/.*)?", auth.soap_login, auth=False
    )
