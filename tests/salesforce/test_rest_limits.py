"""The daily API budget: Sforce-Limit-Info, /limits and REQUEST_LIMIT_EXCEEDED (§1.9)."""

from __future__ import annotations

from typing import cast

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType, Usage
from simple_salesforce.exceptions import SalesforceRefusedRequest

from syncswim_lib.sandbox.salesforce.emulator import Emulator

pytestmark = pytest.mark.salesforce


def test_header_counts_every_data_call(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"] == Usage(1, 15000)
    accounts = cast(SFType, sf.Account)
    accounts.create({"Name": "a"})
    assert accounts.api_usage["api-usage"] == Usage(2, 15000)
    sf.restful(
        "composite/sobjects",
        method="POST",
        json={"records": [{"attributes": {"type": "Account"}, "Name": "b"}] * 3},
    )
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"] == Usage(4, 15000)  # a collection call counts once
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - 5}
    sf_emulator.control.requests()  # the control plane is free
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"] == Usage(6, 15000)


def test_budget_is_enforced_and_resets_daily(sf: Salesforce, sf_emulator: Emulator) -> None:
    sf_emulator.control.set_usage(used=0, limit=3)
    for _ in range(3):
        sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as exc:
        cast(SFType, sf.Account).create({"Name": "over"})
    assert exc.value.status == 403
    assert exc.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert sf_emulator.org.count("Account") == 0
    sf_emulator.control.clock_advance(86400)
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"] == Usage(1, 3)
