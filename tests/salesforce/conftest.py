"""Fixtures for the Salesforce emulator: one emulator per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from syncswim_lib.sandbox.salesforce.emulator import Emulator, start_emulator

# Custom fields and objects the REST tests rely on (a real org would declare them in setup).
TEST_SCHEMA: list[dict[str, Any]] = [
    {
        "name": "Account",
        "fields": [
            {
                "name": "ExtId__c",
                "type": "string",
                "length": 64,
                "externalId": True,
                "unique": True,
            },
            {"name": "Region__c", "type": "string", "length": 40, "externalId": True},
            {
                "name": "Tier__c",
                "type": "picklist",
                "picklistValues": ["Gold", "Silver"],
                "restrictedPicklist": True,
            },
        ],
    },
    {
        "name": "Contact",
        "fields": [
            {
                "name": "App_Id__c",
                "type": "string",
                "length": 64,
                "externalId": True,
                "unique": True,
                "caseSensitive": True,
            },
        ],
    },
    {
        "name": "Employee__c",
        "label": "Employee",
        "fields": [
            {
                "name": "Account__c",
                "type": "reference",
                "referenceTo": ["Account"],
                "childRelationshipName": "Employees__r",
                "cascadeDelete": True,
            },
            {
                "name": "Badge__c",
                "type": "string",
                "length": 20,
                "externalId": True,
                "unique": True,
            },
            {"name": "Salary__c", "type": "currency"},
            # small precisions, so the range checks have boundaries a test can reach
            {"name": "Bonus__c", "type": "currency", "precision": 5, "scale": 2},
            {"name": "Rate__c", "type": "percent", "precision": 3, "scale": 1},
            {"name": "Score__c", "type": "double", "precision": 4, "scale": 0},
            {"name": "Start__c", "type": "date"},
            {"name": "Active__c", "type": "boolean"},
            {
                "name": "Skills__c",
                "type": "multipicklist",
                "picklistValues": ["Python", "SQL", "Apex"],
            },
            {
                "name": "Shifts__c",
                "type": "multipicklist",
                "picklistValues": ["Early", "Late", "Night"],
                "restrictedPicklist": True,
            },
            {"name": "Notes__c", "type": "textarea", "length": 32768},
        ],
    },
]


def make_client(
    emu: Emulator, user: str = "integration", version: str = "62.0", origin: str | None = None
) -> Salesforce:
    """Exactly what a user of simple-salesforce writes, plus trusting the emulator's CA."""
    session = requests.Session()
    sf = Salesforce(
        instance_url=emu.url, session_id=emu.token(user), version=version, session=session
    )
    sf.session.verify = str(emu.ca_path)
    sf.session.trust_env = False  # this machine's REQUESTS_CA_BUNDLE would override verify
    if origin:  # SFType calls don't copy sf.headers, but every call uses the session
        sf.session.headers["Sforce-Call-Options"] = f"client={origin}"
    return sf


@pytest.fixture(scope="session")
def _sf_emulator_session() -> Iterator[Emulator]:
    emu = start_emulator(schema=TEST_SCHEMA)
    yield emu
    emu.stop()


@pytest.fixture
def sf_emulator(_sf_emulator_session: Emulator) -> Emulator:
    _sf_emulator_session.control.reset()
    return _sf_emulator_session


@pytest.fixture
def sf(sf_emulator: Emulator) -> Iterator[Salesforce]:
    client = make_client(sf_emulator)
    yield client
    client.session.close()


@pytest.fixture
def sf_human(sf_emulator: Emulator) -> Iterator[Salesforce]:
    client = make_client(sf_emulator, user="human")
    yield client
    client.session.close()
