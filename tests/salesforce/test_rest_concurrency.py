"""Several clients writing at once through REST lose nothing and never share an id."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType

pytestmark = pytest.mark.salesforce

THREADS = 6
PER_THREAD = 40


def new_client(handle: Any) -> Salesforce:
    session = requests.Session()
    session.verify = str(handle.ca_path)
    session.trust_env = False  # a machine-wide REQUESTS_CA_BUNDLE would override verify
    return Salesforce(
        instance_url=handle.url, session_id=handle.token(), version="62.0", session=session
    )


def test_concurrent_creates_and_updates_lose_nothing(sf_emulator: Any, sf: Salesforce) -> None:
    tag = f"cc{uuid.uuid4().hex[:10]}"
    start = threading.Barrier(THREADS)

    def writer(index: int) -> list[str]:
        client = new_client(sf_emulator)
        accounts = cast(SFType, client.Account)
        start.wait(timeout=30)  # all threads hit the server together
        created = []
        for n in range(PER_THREAD):
            record_id = accounts.create({"Name": f"{tag}-{index}-{n}"})["id"]
            accounts.update(record_id, {"Description": f"by {index}", "NumberOfEmployees": n})
            created.append(record_id)
        client.session.close()
        return created

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(writer, range(THREADS)))

    all_ids = [i for ids in results for i in ids]
    assert len(all_ids) == THREADS * PER_THREAD
    assert len(set(all_ids)) == len(all_ids), "two creates returned the same id"
    total = sf.query(f"SELECT COUNT() FROM Account WHERE Name LIKE '{tag}-%'")["totalSize"]
    assert total == THREADS * PER_THREAD
    records = sf.query_all(
        f"SELECT Id, Name, Description, NumberOfEmployees FROM Account WHERE Name LIKE '{tag}-%'"
    )["records"]
    assert {r["Id"] for r in records} == set(all_ids)
    for record in records:
        _, index, n = record["Name"].rsplit("-", 2)
        assert record["Description"] == f"by {index}"
        assert record["NumberOfEmployees"] == int(n)
