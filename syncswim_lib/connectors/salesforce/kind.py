"""The `salesforce` kind: an org, read by Change Data Capture over CometD (or, with
`capture: poll`, by polling SystemModstamp) and written by sObject Collections or Bulk
API 2.0 jobs (docs/salesforce.md). It names its tables
objects, keeps no batch markers (no transactions: apply is idempotent by external-id
upserts instead) and tags its writes with `Sforce-Call-Options: client=<sync>`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from syncswim_lib.connectors.kinds import Capabilities, KindDescription, Reading, Settings
from syncswim_lib.connectors.salesforce import settings as sf
from syncswim_lib.envelope import ReplayPosition, WatermarkPosition
from syncswim_lib.errors import ConfigError

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.config.secrets import Secret
    from syncswim_lib.connectors.base import Connector

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
        Reading("stream", (ReplayPosition, WatermarkPosition), CAPABILITIES),
        Reading("poll", WatermarkPosition, POLLED_CAPABILITIES),
    ),
    open=_open,
    check=_check,
)
