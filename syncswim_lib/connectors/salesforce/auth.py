"""Logging in: an unmodified simple-salesforce client for one endpoint's settings.

simple-salesforce sends every login to `https://<domain>.salesforce.com`; a `login_url`
(an org behind a proxy, the emulator) is reached by a transport adapter mounted on that
host which forwards the request, so the client itself stays as it is.

An expired or revoked session is renewed on the session itself (`_TimeoutSession`): an
answer 401 to a call with a bearer token makes a login form log in again once and the
call is sent again with the new token. That covers every call through the client,
REST and Bulk API 2.0 alike (simple-salesforce renews REST calls only, and a Bulk job's
headers keep the token they were made with); the CometD client asks `renew` itself.
A session-token endpoint cannot log in again: its 401 stays a FatalError.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from syncswim_lib.connectors.salesforce.client import Meter
from syncswim_lib.connectors.salesforce.settings import SalesforceSettings
from syncswim_lib.errors import ConfigError, FatalError, RetriableError

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce


class _TimeoutSession(requests.Session):
    """A session whose calls all have a timeout: simple-salesforce passes none for most
    of its calls, and a server that stops answering must fail a run, not hang it."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        # counts the calls and reads Sforce-Limit-Info of every answer (client.Api)
        self.meter = Meter()
        self.hooks["response"].append(self.meter.hook)
        # set by open_client for a form that can log in again: the stale token in, the
        # current one out (None: it cannot)
        self.renew: Callable[[str], str | None] | None = None
        self._renewed: dict[str, str] = {}  # stale token -> the one that replaced it

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", (min(10.0, self.timeout_s), self.timeout_s))
        token = _bearer(kwargs.get("headers"))
        if token in self._renewed:  # a Bulk job's headers still carry the old token
            token = self._renewed[token]
            kwargs["headers"] = _with_bearer(kwargs["headers"], token)
        response = super().request(method, url, *args, **kwargs)
        if response.status_code != 401 or token is None or self.renew is None:
            return response
        fresh = self.renew(token)
        if fresh is None or fresh == token:
            return response
        self._renewed[token] = fresh
        kwargs["headers"] = _with_bearer(kwargs["headers"], fresh)
        return super().request(method, url, *args, **kwargs)


def _bearer(headers: Any) -> str | None:
    for name, value in dict(headers or {}).items():
        if str(name).lower() == "authorization":
            scheme, _, token = str(value).partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None


def _with_bearer(headers: Any, token: str) -> dict[str, Any]:
    out = {k: v for k, v in dict(headers or {}).items() if str(k).lower() != "authorization"}
    out["Authorization"] = f"Bearer {token}"
    return out


def _renewer(sf: Salesforce) -> Callable[[str], str | None]:
    """Logs in again once per stale token (calls in flight together renew once): the
    login forms keep what they need (simple-salesforce's login partial; a JWT login signs
    a new assertion). A refused login leaves the 401 to fail the call."""
    lock = threading.Lock()

    def renew(stale: str) -> str | None:
        with lock:
            if str(sf.session_id) == stale:
                try:
                    sf._refresh_session()
                except Exception:  # refused credentials: the call's 401 says it
                    return None
            return str(sf.session_id)

    return renew


def private_key_text(settings: SalesforceSettings) -> str:
    """The PEM text of a JWT bearer endpoint's private key, checked to be an unencrypted
    private key; a ConfigError naming the setting otherwise (never the key itself)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    where = f"endpoints.{settings.endpoint}"
    if settings.private_key_file is not None:
        key = f"{where}.private_key_file"
        try:
            text = Path(settings.private_key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text (PEM) file"
            raise ConfigError(
                f"the private key file {settings.private_key_file!r} cannot be read: {reason}",
                path=key,
            ) from None
    else:
        key = f"{where}.private_key"
        # an environment variable often carries a PEM on one line with escaped newlines
        text = settings.private_key or ""
        if "\\n" in text and "\n" not in text.strip():
            text = text.replace("\\n", "\n")
    try:
        load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        raise ConfigError(
            "the private key is encrypted; give it without a passphrase", path=key
        ) from None
    except ValueError:
        raise ConfigError(
            "not a PEM private key (expected -----BEGIN PRIVATE KEY----- or "
            "-----BEGIN RSA PRIVATE KEY-----)",
            path=key,
        ) from None
    return text


class _Forward(HTTPAdapter):
    """Sends a request for the login host to `target` instead (same path and query)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = str(request.url)
        path = url.split("://", 1)[1].partition("/")[2]
        request.url = f"{self.target}/{path}"
        return super().send(request, *args, **kwargs)


def make_session(settings: SalesforceSettings) -> _TimeoutSession:
    session = _TimeoutSession(settings.timeout_s)
    if settings.ca_bundle:
        session.verify = settings.ca_bundle
        # REQUESTS_CA_BUNDLE in the environment would override `verify` otherwise
        session.trust_env = False
    if settings.login_url:
        domain = settings.domain or "login"
        session.mount(f"https://{domain}.salesforce.com", _Forward(settings.login_url))
    return session


def open_client(settings: SalesforceSettings) -> Salesforce:
    """A logged-in client; ConfigError/FatalError for refused credentials (they will not
    start working by themselves), RetriableError when the login host cannot be reached."""
    from simple_salesforce.api import Salesforce
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

    session = make_session(settings)
    # numbers as Decimal: a currency(18,2) read as a float would lose its last digits
    common: dict[str, Any] = {
        "version": settings.api_version,
        "session": session,
        "parse_float": Decimal,
    }
    if settings.domain:
        common["domain"] = settings.domain
    where = f"endpoints.{settings.endpoint}"
    try:
        if settings.form == "session":
            return Salesforce(
                instance_url=settings.instance_url, session_id=settings.token, **common
            )
        sf = _login(settings, common, where)
        session.renew = _renewer(sf)
        return sf
    except SalesforceAuthenticationFailed as exc:
        # the message is Salesforce's (error code and description), never the secret
        raise ConfigError(
            f"login to Salesforce refused ({settings.form}): {exc.code}: {exc.auth_message}",
            path=where,
        ) from None
    except requests.RequestException as exc:
        raise RetriableError(
            f"login to Salesforce for endpoint {settings.endpoint} failed: {type(exc).__name__}"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:  # simple-salesforce raises plain errors for odd answers
        raise FatalError(
            f"login to Salesforce for endpoint {settings.endpoint} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _login(settings: SalesforceSettings, common: dict[str, Any], where: str) -> Salesforce:
    from simple_salesforce.api import Salesforce

    if settings.form == "jwt_bearer":
        # simple-salesforce signs the assertion (RS256, PyJWT) with `aud` the login host
        # (https://<domain>.salesforce.com) and posts it there; `login_url` forwards it
        return Salesforce(
            username=settings.username,
            consumer_key=settings.consumer_key,
            privatekey=private_key_text(settings),
            **common,
        )
    if settings.form == "oauth_password":
        return Salesforce(
            username=settings.username,
            password=settings.password,
            consumer_key=settings.consumer_key,
            consumer_secret=settings.consumer_secret,
            **common,
        )
    if settings.form == "client_credentials":
        if settings.domain in (None, "login", "test"):
            raise ConfigError(
                "OAuth client credentials log in at the org's My Domain: set domain "
                "(e.g. mycompany.my for https://mycompany.my.salesforce.com)",
                path=f"{where}.domain",
            )
        return Salesforce(
            consumer_key=settings.consumer_key,
            consumer_secret=settings.consumer_secret,
            **common,
        )
    return Salesforce(
        username=settings.username,
        password=settings.password,
        security_token=settings.security_token or "",
        **common,
    )
