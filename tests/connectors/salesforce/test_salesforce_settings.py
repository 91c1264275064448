"""A salesforce endpoint's auth form is checked when the YAML is loaded (no login)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.secrets import Secret
from syncswim_lib.errors import ConfigError

YAML = """\
endpoints:
  app: {{kind: postgres, dsn: {{env: APP_DSN}}}}
  crm: {{kind: salesforce, instance_url: {{env: SF_URL}}{auth}}}
syncs:
  app_crm:
    between: [app, crm]
    entities:
      customers:
        app: {{table: public.customers, key: [id]}}
        crm: {{object: Account, key: Id}}
        mode: {{external_id: {{app: code, crm: Code__c}}}}
        fields: {{name: Name}}
"""


def _load(tmp_path: Path, auth: str) -> object:
    path = tmp_path / "sync.yaml"
    path.write_text(YAML.format(auth=auth))
    return load_project(path)


@pytest.mark.parametrize(
    "auth",
    [
        ", token: {env: SF_TOKEN}",
        ", username: u, password: {env: SF_PW}, consumer_key: k, consumer_secret: {env: SF_CS}",
        ", consumer_key: k, consumer_secret: {env: SF_CS}, domain: acme.my",
        ", username: u, password: {env: SF_PW}, security_token: {env: SF_ST}",
        ", username: u, password: {env: SF_PW}",
        ", username: u, consumer_key: k, private_key: {env: SF_KEY}",
        ", username: u, consumer_key: k, private_key_file: /keys/sf.pem",
        ", username: u, consumer_key: k, private_key: written-literally",
    ],
)
def test_each_auth_form_loads_and_keeps_its_secrets_secret(tmp_path: Path, auth: str) -> None:
    project = _load(tmp_path, auth)
    settings = project.endpoints["crm"].settings  # type: ignore[attr-defined]
    for key in ("token", "password", "consumer_secret", "security_token", "private_key"):
        if key in settings:
            assert isinstance(settings[key], Secret)


@pytest.mark.parametrize(
    "auth",
    [
        "",
        ", password: {env: SF_PW}",
        ", token: {env: SF_TOKEN}, username: u, password: p",
        ", consumer_key: k, private_key: {env: SF_KEY}",  # JWT without the user
    ],
)
def test_no_auth_form_or_two_of_them_name_the_endpoint(tmp_path: Path, auth: str) -> None:
    with pytest.raises(ConfigError, match="one way to log in") as info:
        _load(tmp_path, auth)
    assert info.value.path == "endpoints.crm" and info.value.file is not None


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        (", bulk_write_threshold: 0", "bulk_write_threshold", "positive whole number"),
        (", bulk_write_threshold: lots", "bulk_write_threshold", "positive whole number"),
        (", api_budget_share: 1.5", "api_budget_share", "above 0 and at most 1"),
        (", api_budget_share: 0", "api_budget_share", "above 0 and at most 1"),
        (", bulk_threshold: -3", "bulk_threshold", "positive whole number"),
    ],
)
def test_write_threshold_and_budget_share_are_checked_at_load(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        _load(tmp_path, ", token: {env: SF_TOKEN}" + extra)
    assert key in str(info.value) and info.value.file is not None


def test_write_threshold_and_budget_share_load() -> None:
    from syncswim_lib.connectors.salesforce.settings import SalesforceSettings

    got = SalesforceSettings.from_resolved(
        "crm",
        {
            "instance_url": "https://x.my.salesforce.com",
            "token": "t",
            "bulk_write_threshold": "500",
            "api_budget_share": "0.5",
        },
    )
    assert (got.bulk_write_threshold, got.api_budget_share) == (500, 0.5)
