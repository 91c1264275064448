"""The settings of a `kind: salesforce` endpoint and the auth form they choose.

Pure: no I/O and no imports from config/, so the loader can check the form of a
declaration (`check_form`) without opening anything, and the connector can read the
resolved values (`SalesforceSettings.from_resolved`) without knowing about secrets.

Auth forms, each one a set of settings (exactly one form per endpoint):

- session: `token` (an access token or session id; instance_url says where the org is)
- oauth_password: `username`, `password`, `consumer_key`, `consumer_secret`
  (OAuth username-password flow of a connected app)
- client_credentials: `consumer_key`, `consumer_secret` (OAuth client credentials flow;
  the connected app runs as its integration user)
- soap_password: `username`, `password`, optional `security_token` (SOAP login, what
  simple-salesforce does for username and password; Salesforce retires it in 2027)
- jwt_bearer: `username`, `consumer_key` and `private_key` (PEM text) or
  `private_key_file` (a PEM file): the OAuth JWT bearer flow of a connected app whose
  certificate signs for that key; a new assertion is signed at every login
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from syncswim_lib.errors import ConfigError

AuthForm = Literal["session", "oauth_password", "client_credentials", "soap_password", "jwt_bearer"]

REQUIRED = ("instance_url",)
AUTH_KEYS = (
    "token",
    "username",
    "password",
    "security_token",
    "consumer_key",
    "consumer_secret",
    "private_key",
    "private_key_file",
)
OPTIONAL = (
    *AUTH_KEYS,
    "domain",  # login host: https://<domain>.salesforce.com (login, test, mycompany.my)
    "login_url",  # a login host that is not *.salesforce.com (the emulator, a proxy)
    "ca_bundle",
    "api_version",
    "bulk_threshold",
    "bulk_write_threshold",
    "api_budget_share",
    "timeout",
    # stream (Change Data Capture, the default) or poll (SystemModstamp): the kind's
    # readings (kind.py), checked by the config loader
    "capture",
)
# secret even when written literally: never shown in a repr or an error
SECRET = frozenset({"token", "password", "security_token", "consumer_secret", "private_key"})

DEFAULT_API_VERSION = "62.0"
# a snapshot of more rows than this goes through a Bulk API 2.0 query job: one job
# costs a handful of calls whatever the size, where SOQL pages cost one call per 2,000
DEFAULT_BULK_THRESHOLD = 10_000
DEFAULT_TIMEOUT_S = 120.0
# one operation of one apply with more records than this goes through a Bulk API 2.0
# ingest job: a job costs about 6 calls whatever its size, collections one per 200
# records, so from about 1,200 records on a job is cheaper
DEFAULT_BULK_WRITE_THRESHOLD = 2_000
# the share of the org's daily API allowance this endpoint may use: past it, writing
# stops until the org's count falls back (Salesforce counts 24 hours rolling)
DEFAULT_API_BUDGET_SHARE = 1.0

_FORMS: tuple[tuple[AuthForm, frozenset[str], frozenset[str]], ...] = (
    # (form, settings it needs, auth settings it may also have)
    ("session", frozenset({"token"}), frozenset()),
    (
        "oauth_password",
        frozenset({"username", "password", "consumer_key", "consumer_secret"}),
        frozenset(),
    ),
    ("client_credentials", frozenset({"consumer_key", "consumer_secret"}), frozenset()),
    ("soap_password", frozenset({"username", "password"}), frozenset({"security_token"})),
    ("jwt_bearer", frozenset({"username", "consumer_key", "private_key"}), frozenset()),
    ("jwt_bearer", frozenset({"username", "consumer_key", "private_key_file"}), frozenset()),
)
FORMS_TEXT = (
    "token; or username, password, consumer_key and consumer_secret (OAuth password); "
    "or consumer_key and consumer_secret (OAuth client credentials); or username and "
    "password with an optional security_token (SOAP login); or username, consumer_key and "
    "private_key or private_key_file (OAuth JWT bearer)"
)


def auth_form(keys: Collection[str]) -> AuthForm | None:
    """The auth form the given setting names choose; None when they match none or mix
    two (`form_problem` says how)."""
    given = frozenset(keys) & frozenset(AUTH_KEYS)
    for form, needs, may in _FORMS:
        if given == needs | (given & may):
            return form
    return None


def form_problem(keys: Collection[str]) -> str:
    shown = ", ".join(sorted(frozenset(keys) & frozenset(AUTH_KEYS))) or "none"
    return f"a salesforce endpoint needs one way to log in: {FORMS_TEXT} (given: {shown})"


def check_form(keys: Collection[str], path: str) -> AuthForm:
    """`auth_form`, or a ConfigError naming `path` (the endpoint's key path)."""
    form = auth_form(keys)
    if form is None:
        raise ConfigError(form_problem(keys), path=path)
    return form


@dataclass(frozen=True)
class SalesforceSettings:
    """The resolved settings of one endpoint (secrets already read)."""

    endpoint: str
    instance_url: str
    form: AuthForm
    token: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    consumer_key: str | None = None
    consumer_secret: str | None = None
    private_key: str | None = None  # PEM text
    private_key_file: str | None = None
    domain: str | None = None
    login_url: str | None = None
    ca_bundle: str | None = None
    api_version: str = DEFAULT_API_VERSION
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD
    bulk_write_threshold: int = DEFAULT_BULK_WRITE_THRESHOLD
    api_budget_share: float = DEFAULT_API_BUDGET_SHARE
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __repr__(self) -> str:  # the dataclass repr would show the secrets
        return f"SalesforceSettings({self.endpoint!r}, {self.instance_url!r}, {self.form})"

    __str__ = __repr__

    @staticmethod
    def from_resolved(endpoint: str, values: Mapping[str, str]) -> SalesforceSettings:
        base = f"endpoints.{endpoint}"
        unknown = set(values) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}", path=base)
        url = values.get("instance_url", "").strip().rstrip("/")
        if not url.startswith("https://"):
            raise ConfigError(
                f"expected an https:// URL of the org, got {url!r}", path=f"{base}.instance_url"
            )
        form = check_form(values, base)
        version = values.get("api_version", DEFAULT_API_VERSION).strip()
        if not _is_version(version):
            raise ConfigError(
                f"expected an API version like 62.0, got {version!r}", path=f"{base}.api_version"
            )
        numbers = check_numbers(values, base)
        return SalesforceSettings(
            endpoint=endpoint,
            instance_url=url,
            form=form,
            token=values.get("token"),
            username=values.get("username"),
            password=values.get("password"),
            security_token=values.get("security_token"),
            consumer_key=values.get("consumer_key"),
            consumer_secret=values.get("consumer_secret"),
            private_key=values.get("private_key"),
            private_key_file=values.get("private_key_file"),
            domain=values.get("domain"),
            login_url=(values.get("login_url") or "").rstrip("/") or None,
            ca_bundle=values.get("ca_bundle"),
            api_version=version,
            bulk_threshold=int(numbers["bulk_threshold"]),
            bulk_write_threshold=int(numbers["bulk_write_threshold"]),
            api_budget_share=numbers["api_budget_share"],
            timeout_s=numbers["timeout"],
        )


def check_numbers(values: Mapping[str, object], base: str) -> dict[str, float]:
    """The numeric settings among `values` (those given as text; `{env: ...}` ones are
    checked when read), or their defaults; a ConfigError naming the key path for a bad
    one. The loader calls it so a typo fails `validate --no-live`, not the first run."""
    text = {k: v for k, v in values.items() if isinstance(v, str | int | float)}
    return {
        "bulk_threshold": _positive_int(text, "bulk_threshold", DEFAULT_BULK_THRESHOLD, base),
        "bulk_write_threshold": _positive_int(
            text, "bulk_write_threshold", DEFAULT_BULK_WRITE_THRESHOLD, base
        ),
        "api_budget_share": _share(text, "api_budget_share", base),
        "timeout": _positive_float(text, "timeout", DEFAULT_TIMEOUT_S, base),
    }


def _share(values: Mapping[str, object], key: str, base: str) -> float:
    raw = values.get(key)
    if raw is None:
        return DEFAULT_API_BUDGET_SHARE
    try:
        number = float(str(raw).strip())
    except ValueError:
        number = -1.0
    if not 0 < number <= 1:
        raise ConfigError(
            f"expected a share of the daily API allowance above 0 and at most 1 (0.5 keeps "
            f"half for other integrations), got {raw!r}",
            path=f"{base}.{key}",
        )
    return number


def _is_version(text: str) -> bool:
    major, dot, minor = text.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit()


def _positive_int(values: Mapping[str, object], key: str, default: int, base: str) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        number = int(str(raw).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"expected a positive whole number, got {raw!r}", path=f"{base}.{key}")
    return number


def _positive_float(values: Mapping[str, object], key: str, default: float, base: str) -> float:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        number = float(str(raw).strip())
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ConfigError(
            f"expected a positive number of seconds, got {raw!r}", path=f"{base}.{key}"
        )
    return number
