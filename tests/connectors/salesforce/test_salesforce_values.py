"""Pure parts of the Salesforce connector: values between Salesforce's forms and canonical
ones, SOQL literals, change-event headers, settings (no org needed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from syncswim_lib.connectors.salesforce.capture import (
    _changed,
    channel_for,
    flatten,
    origin_of,
    replay_of,
)
from syncswim_lib.connectors.salesforce.settings import SalesforceSettings, auth_form
from syncswim_lib.connectors.salesforce.types import (
    column_info,
    soql_literal,
    to_canonical,
    to_salesforce,
)
from syncswim_lib.envelope import PgPosition, ReplayPosition
from syncswim_lib.errors import ConfigError

CURRENCY = column_info({"name": "Credit__c", "type": "currency", "precision": 10, "scale": 2})
WHEN = column_info({"name": "Seen__c", "type": "datetime"})
DAY = column_info({"name": "Since__c", "type": "date"})
FLAG = column_info({"name": "Active__c", "type": "boolean", "nillable": False})
TEXT = column_info({"name": "Name", "type": "string", "length": 80})
SEATS = column_info({"name": "Seats__c", "type": "int", "digits": 6})


def test_values_from_json_and_csv_are_canonical() -> None:
    assert to_canonical(12.5, CURRENCY) == Decimal("12.50")
    assert str(to_canonical("12.5", CURRENCY)) == "12.50"  # Bulk CSV text
    assert to_canonical("", CURRENCY) is None and to_canonical("", TEXT) is None
    assert to_canonical("2013-05-20T20:49:32.000+0000", WHEN) == datetime(
        2013, 5, 20, 20, 49, 32, tzinfo=UTC
    )
    assert to_canonical("2024-04-09T20:26:27.000Z", WHEN) == datetime(
        2024, 4, 9, 20, 26, 27, tzinfo=UTC
    )
    assert to_canonical("2024-02-29", DAY) == date(2024, 2, 29)
    assert to_canonical("true", FLAG) is True and to_canonical(False, FLAG) is False
    assert to_canonical(7.0, SEATS) == 7 and type(to_canonical("7", SEATS)) is int


def test_values_to_json_bodies() -> None:
    east = datetime(2024, 3, 31, 1, 30, 15, 999, tzinfo=timezone(timedelta(hours=2)))
    assert to_salesforce(east, WHEN) == "2024-03-30T23:30:15.000Z"
    assert to_salesforce(date(2024, 1, 2), DAY) == "2024-01-02"
    assert to_salesforce(Decimal("12.50"), CURRENCY) == 12.5
    assert to_salesforce(Decimal("12.00"), CURRENCY) == 12


def test_soql_literals_are_escaped() -> None:
    assert soql_literal('O\'Brien \\ "x"\nnext', TEXT) == "'O\\'Brien \\\\ \\\"x\\\"\\nnext'"
    assert soql_literal(Decimal("1.50"), CURRENCY) == "1.50"
    assert soql_literal(True, FLAG) == "true"
    assert soql_literal(date(2024, 1, 2), DAY) == "2024-01-02"
    assert soql_literal(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), WHEN) == "2024-01-02T03:04:05Z"


def test_describe_families() -> None:
    assert (CURRENCY.family, CURRENCY.precision, CURRENCY.scale) == ("decimal", 10, 2)
    assert (WHEN.family, WHEN.precision) == ("timestamptz", 0)
    assert (TEXT.family, TEXT.max_length, TEXT.db_type) == ("text", 80, "string(80)")
    assert column_info({"name": "X", "type": "double", "precision": 0}).family == "float"
    lookup = column_info({"name": "AccountId", "type": "reference", "referenceTo": ["Account"]})
    assert (lookup.family, lookup.db_type) == ("text", "reference(Account)")
    key = column_info({"name": "Id", "type": "id", "length": 18, "nillable": False})
    assert (key.auto_generated, key.nullable, key.max_length) == (True, False, 18)


def test_change_event_headers() -> None:
    assert origin_of("com/salesforce/api/rest/62.0;client=app_crm") == "app_crm"
    assert origin_of("com/salesforce/api/soap/49.0;client=Astro,defaultNamespace=ns") == "Astro"
    assert origin_of("com/salesforce/api/rest/62.0") is None and origin_of("") is None
    assert flatten({"Name": {"FirstName": "Ada", "LastName": "L"}, "Email": "a@b"}) == {
        "FirstName": "Ada",
        "LastName": "L",
        "Email": "a@b",
    }
    assert flatten({"BillingAddress": {"City": "Oslo"}, "Address": {"Street": "1 Way"}}) == {
        "BillingCity": "Oslo",
        "Street": "1 Way",
    }
    header = {"changedFields": ["Name.LastName", "BillingAddress.City", "Phone", "Phone"]}
    assert _changed(header) == ("LastName", "BillingCity", "Phone")
    assert channel_for("Account") == "/data/AccountChangeEvent"
    assert channel_for("Employee__c") == "/data/Employee__ChangeEvent"
    assert replay_of(None) == -2 and replay_of(ReplayPosition(41)) == 41
    with pytest.raises(ConfigError):
        replay_of(PgPosition(1))


def test_settings_choose_one_auth_form_and_hide_secrets() -> None:
    assert auth_form({"token"}) == "session"
    assert auth_form({"username", "password"}) == "soap_password"
    assert auth_form({"username", "password", "security_token"}) == "soap_password"
    assert auth_form({"consumer_key", "consumer_secret"}) == "client_credentials"
    assert auth_form({"username", "password", "consumer_key", "consumer_secret"}) == (
        "oauth_password"
    )
    assert auth_form({"token", "password"}) is None and auth_form(set()) is None
    s = SalesforceSettings.from_resolved(
        "crm", {"instance_url": "https://org.example/", "token": "s3cret", "timeout": "5"}
    )
    assert (s.instance_url, s.timeout_s, s.api_version) == ("https://org.example", 5.0, "62.0")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    for bad in ({"bulk_threshold": "0"}, {"api_version": "v62"}, {"timeout": "-1"}):
        with pytest.raises(ConfigError) as info:
            SalesforceSettings.from_resolved(
                "crm", {"instance_url": "https://o", "token": "t", **bad}
            )
        assert info.value.path == f"endpoints.crm.{next(iter(bad))}"
