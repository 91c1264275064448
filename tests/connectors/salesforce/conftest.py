"""The Salesforce connector's tests: one emulator per session (as tests/salesforce does),
reset before each test, and a connector logged in to it with a session token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.api import Salesforce

from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator

# Fields a real org would have been given by its admin for the sync.
SCHEMA: list[dict[str, Any]] = [
    {
        "name": "Account",
        "fields": [
            {"name": "Code__c", "type": "string", "length": 20, "externalId": True, "unique": True},
            {
                "name": "App_Id__c",
                "type": "string",
                "length": 20,
                "externalId": True,
                "unique": True,
            },
            {
                "name": "Tier__c",
                "type": "picklist",
                "picklistValues": ["Gold", "Silver"],
                "restrictedPicklist": True,
            },
            {"name": "Credit__c", "type": "currency", "precision": 10, "scale": 2},
            {"name": "Seats__c", "type": "int", "digits": 6},
            {"name": "Active__c", "type": "boolean"},
            {"name": "Since__c", "type": "date"},
            {"name": "Seen__c", "type": "datetime"},
            # the largest precision a describe gives (18): more digits than a double holds
            {"name": "Revenue__c", "type": "currency", "precision": 18, "scale": 2},
            {"name": "Share__c", "type": "percent", "precision": 18, "scale": 8},
            {"name": "Units__c", "type": "double", "precision": 18, "scale": 0},
        ],
    },
    {
        "name": "Contact",
        "fields": [
            {
                "name": "App_Id__c",
                "type": "string",
                "length": 20,
                "externalId": True,
                "unique": True,
            },
        ],
    },
]


def connector_for(emu: Emulator, endpoint: str = "crm", **extra: str) -> SalesforceConnector:
    settings = {"instance_url": emu.url, "ca_bundle": str(emu.ca_path), **extra}
    if not any(k in settings for k in ("username", "consumer_key")):
        settings["token"] = emu.token("integration")
    return SalesforceConnector.from_settings(endpoint, settings)


@pytest.fixture(scope="session")
def _emulator() -> Iterator[Emulator]:
    emu = start_emulator(schema=SCHEMA)
    yield emu
    emu.stop()


@pytest.fixture
def emu(_emulator: Emulator) -> Emulator:
    _emulator.control.reset()
    return _emulator


@pytest.fixture
def sfc(emu: Emulator) -> Iterator[SalesforceConnector]:
    c = connector_for(emu)
    yield c
    c.close()


@pytest.fixture
def human(emu: Emulator) -> Iterator[Salesforce]:
    """A person's client (no Sforce-Call-Options): edits as another user would make them."""
    sf = emu.client(user="human")
    yield sf
    sf.session.close()
