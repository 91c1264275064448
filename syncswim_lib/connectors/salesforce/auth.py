"""Logging in: an unmodified simple-salesforce client for one endpoint's settings.

simple-salesforce sends every login to `https://<domain>.salesforce.com`; a `login_url`
(an org behind a proxy, the emulator) is reached by a transport adapter mounted on that
host which forwards the request, so the client itself stays as it is.
"""

from __future__ import annotations

from decimal import Decimal
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

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", (min(10.0, self.timeout_s), self.timeout_s))
        return super().request(method, url, *args, **kwargs)


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


def make_session(settings: SalesforceSettings) -> requests.Session:
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
    except Exception as exc:  # simple-salesforce raises plain errors for odd answers
        raise FatalError(
            f"login to Salesforce for endpoint {settings.endpoint} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
