"""Helpers shared by the Bulk API 2.0 end-to-end tests."""

from __future__ import annotations

import csv
import io
import time
from typing import Any, cast

import requests
from simple_salesforce import Salesforce
from simple_salesforce.api import SFType
from simple_salesforce.bulk2 import SFBulk2Handler, SFBulk2Type


def raw(sf: Salesforce, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A call through the client's own keep-alive session, with its auth headers."""
    headers = {**sf.headers, **kwargs.pop("headers", {})}
    return sf.session.request(method, sf.base_url + path, headers=headers, timeout=30, **kwargs)


def bulk2(sf: Salesforce, sobject: str) -> SFBulk2Type:
    return cast(SFBulk2Type, getattr(cast(SFBulk2Handler, sf.bulk2), sobject))


def rest(sf: Salesforce, sobject: str) -> SFType:
    return cast(SFType, getattr(sf, sobject))


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def wait_for_state(
    sf: Salesforce, kind: str, job_id: str, states: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = sf.restful(f"jobs/{kind}/{job_id}")
        assert isinstance(info, dict)
        if info["state"] in states:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck in {info['state']}, wanted {states}")
        time.sleep(0.01)  # poll interval, not a wait for a guessed duration


def count(sf: Salesforce, where: str, sobject: str = "Account") -> int:
    return int(sf.query(f"SELECT COUNT() FROM {sobject} WHERE {where}")["totalSize"])


def open_job(sf: Salesforce, **spec: Any) -> dict[str, Any]:
    info = sf.restful(
        "jobs/ingest", method="POST", json={"object": "Account", "operation": "insert", **spec}
    )
    assert isinstance(info, dict)
    return info


def put_csv(sf: Salesforce, job_id: str, data: str) -> requests.Response:
    return raw(
        sf,
        "PUT",
        f"jobs/ingest/{job_id}/batches",
        data=data.encode(),
        headers={"Content-Type": "text/csv"},
    )
