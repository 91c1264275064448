"""The `salesforce` kind: an org, read by Change Data Capture over CometD (or, with
`capture: poll`, by polling SystemModstamp; `run: streaming` holds one CometD session,
stream.py) and written by sObject Collections or Bulk
API 2.0 jobs (docs/salesforce.md). It names its tables
objects, keeps no batch markers (no transactions: apply is idempotent by external-id
upserts instead) and tags its writes with `Sforce-Call-Options: client=<sync>`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from syncswim_lib.connectors.kinds import Capabilities, KindDescription, Reading, Settings
from syncswim_lib.connectors.salesforce import settings as sf
from syncswim_lib.envelope import Position, ReplayPosition, WatermarkPosition
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.config.secrets import Secret
    from syncswim_lib.connectors.base import Connector, ContinuousReader

# The most records the engine hands one apply. Not the 200 of one collections call:
# apply splits what it is given into collections of 200 itself and, for an operation of
# more than bulk_write_threshold records (default 2,000), sends one Bulk API 2.0 job
# instead, which a limit of 200 would never reach (about ten times the calls for an
# initial load). A job of 10,000 costs about 6 calls; a job may hold 150 MB of CSV.
MAX_BATCH_ROWS = 10_000

CAPABILITIES = Capabilities(
    change_stream=True,
    hard_deletes=True,  # DELETE change events (a purge from the recycle bin has none)
    upsert_by_external_id=True,
    origin_tagging=True,  # changeOrigin of the change events
    batch_markers=False,
    max_batch_rows=MAX_BATCH_ROWS,
)


# `capture: poll`: objects read by SystemModstamp (poll.py), written as above
POLLED_CAPABILITIES = Capabilities(
    change_stream=False,
    hard_deletes=True,  # from the recycle bin (IsDeleted), or by the key-set comparison
    upsert_by_external_id=True,
    origin_tagging=False,  # a record keeps no trace of the call that wrote it
    batch_markers=False,
    max_batch_rows=MAX_BATCH_ROWS,
)


def _open(endpoint: Endpoint) -> Connector:
    from syncswim_lib.connectors.salesforce.connector import SalesforceConnector

    # every declared setting, secrets read now; the connector logs in at first use
    values = {k: endpoint.resolve_setting(k) for k in endpoint.settings}
    conn = SalesforceConnector.from_settings(endpoint.name, values)
    if endpoint.polled:  # capture: poll
        from syncswim_lib.connectors.salesforce.poll import PolledSalesforce

        return PolledSalesforce(conn, endpoint.polls)
    return conn


def streaming_refusal(endpoint: str, off: Sequence[str]) -> str:
    """Why `run: streaming` cannot read `off` (objects whose change events the org does
    not publish: the stream would never see their changes)."""
    names = ", ".join(off)
    return (
        f"run: streaming cannot read {names} of Salesforce endpoint {endpoint}: Change "
        f"Data Capture is not enabled for {'it' if len(off) == 1 else 'them'}, and an object "
        "without change events is only polled, which a streaming run does not do"
    )


STREAMING_FIX = "select the objects in Setup → Change Data Capture, or use run: micro_batch"


def _stream(
    conn: Connector, sync: str, tables: Sequence[str], since: Position | None
) -> ContinuousReader:
    from syncswim_lib.connectors.salesforce.connector import SalesforceConnector
    from syncswim_lib.connectors.salesforce.stream import SalesforceStream

    assert isinstance(conn, SalesforceConnector)  # the stream reading opens no other
    off = conn.fallback.disabled(list(tables))
    if off:
        raise ConfigError(f"{streaming_refusal(conn.endpoint, off)}; {STREAMING_FIX}")
    return SalesforceStream(conn, sync, tables, since)


def _check(settings: Mapping[str, Secret | str], path: str) -> None:
    if sf.auth_form(settings) is None:  # token, or one of the login forms
        raise ConfigError(sf.form_problem(settings), path=path)
    # thresholds and the budget share refused at load, not at the first call
    sf.check_numbers(settings, path)


KIND = KindDescription(
    name="salesforce",
    settings=Settings(required=sf.REQUIRED, optional=sf.OPTIONAL, secret=sf.SECRET),
    table_word="object",
    table_pattern=re.compile(r"[A-Za-z][A-Za-z0-9_]*"),
    table_example="'Account'",
    readings=(
        # a ReplayPosition; while some objects are polled because the org publishes no
        # change events for them, a WatermarkPosition carrying the replay id and their
        # cursors (fallback.py)
        # `run: streaming` reads it continuously (stream.py); every object must have
        # change events then
        Reading("stream", (ReplayPosition, WatermarkPosition), CAPABILITIES, stream=_stream),
        Reading("poll", WatermarkPosition, POLLED_CAPABILITIES),
    ),
    open=_open,
    check=_check,
)
