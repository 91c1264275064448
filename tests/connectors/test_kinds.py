"""Each kind's description (connectors/<kind>/kind.py) against the connector it opens.

Opening touches nothing (each connector connects, or logs in, at its first call), so
these need no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from syncswim_lib.config.models import Endpoint, FrozenDict
from syncswim_lib.config.secrets import Secret
from syncswim_lib.connectors.base import BatchMarkers, markers_of
from syncswim_lib.connectors.kinds import KindDescription
from syncswim_lib.connectors.registry import KINDS, kind_of, open_connector
from syncswim_lib.errors import ConfigError

SETTINGS: dict[str, dict[str, str]] = {
    "postgres": {"dsn": "postgresql://u@127.0.0.1:1/db"},
    "mysql": {"dsn": "mysql://u@127.0.0.1:1/db"},
    "salesforce": {"instance_url": "https://org.example.invalid", "token": "t"},
    "sqlite": {"path": "app.db"},
}


def _endpoint(kind: str, method: str | None, tmp_path: Path) -> Endpoint:
    settings: dict[str, Secret | str] = dict(SETTINGS[kind])
    if kind == "sqlite":
        settings["path"] = str(tmp_path / "app.db")
    for key in kind_of(kind).settings.secret & set(settings):
        settings[key] = Secret(value=str(settings[key]), path=f"endpoints.e.{key}")
    if method is not None and len(kind_of(kind).readings) > 1:
        settings["capture"] = method
    return Endpoint("e", kind, FrozenDict(settings))


READINGS = [(k, r.method) for k in KINDS for r in kind_of(k).readings]


def test_every_kind_of_the_build_is_described_under_its_name() -> None:
    assert set(KINDS) == {"postgres", "mysql", "salesforce", "sqlite"}
    for name in KINDS:
        kind = kind_of(name)
        assert isinstance(kind, KindDescription) and kind.name == name
        assert set(kind.settings.secret) <= set(kind.settings.keys)
        assert set(kind.settings.paths) <= set(kind.settings.keys)
        examples = re.findall(r"'([^']+)'", kind.table_example)
        assert examples and all(kind.table_pattern.fullmatch(e) for e in examples)
    assert kind_of("salesforce").table_word == "object"
    # run: streaming has a reader for every change stream, none for polling
    continuous = {(k, r.method) for k in KINDS for r in kind_of(k).readings if r.continuous}
    assert continuous == {("postgres", "stream"), ("mysql", "stream"), ("salesforce", "stream")}
    with pytest.raises(KeyError):
        kind_of("oracle")


@pytest.mark.parametrize(("kind", "method"), READINGS)
def test_the_opened_connector_has_the_declared_capabilities(
    kind: str, method: str, tmp_path: Path
) -> None:
    endpoint = _endpoint(kind, method, tmp_path)
    assert endpoint.reading.method == method
    conn = open_connector(endpoint)
    try:
        declared = kind_of(kind).reading(method).capabilities
        assert conn.capabilities == declared
        assert endpoint.change_stream == declared.change_stream
        # the flag the pipeline reads and the methods it then calls go together
        assert isinstance(conn, BatchMarkers) == declared.batch_markers
        assert (markers_of(conn) is not None) == declared.batch_markers
    finally:
        conn.close()


def test_salesforce_declares_no_markers_and_bulk_sized_batches() -> None:
    caps = kind_of("salesforce").reading(None).capabilities
    assert not caps.batch_markers and caps.origin_tagging
    # above the default bulk_write_threshold (2,000), so big applies go through a job
    assert caps.max_batch_rows == 10_000
    for name in ("postgres", "mysql", "sqlite"):
        assert kind_of(name).reading(None).capabilities.batch_markers


def test_a_kind_without_a_connector_is_refused_when_opened(tmp_path: Path) -> None:
    endpoint = Endpoint("x", "oracle", FrozenDict({"dsn": "d"}))
    with pytest.raises(ConfigError, match="has no connector in this build yet"):
        open_connector(endpoint)
