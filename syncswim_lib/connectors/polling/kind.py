"""What a polled endpoint is (docs/polling.md), for the kinds that are read by polling:
always (sqlite) or on `capture: poll` (postgres, mysql). Their connectors wrap the kind's
own reading and writing with a poller."""

from __future__ import annotations

from syncswim_lib.connectors.kinds import Capabilities, Reading
from syncswim_lib.envelope import WatermarkPosition

CAPABILITIES = Capabilities(
    change_stream=False,
    hard_deletes=True,  # by a soft-delete column or the key-set comparison
    upsert_by_external_id=True,
    origin_tagging=False,  # only through a declared written_by column
    batch_markers=True,  # written by the database's own connector, with its marker
    max_batch_rows=5000,
)

POLLED = Reading("poll", WatermarkPosition, CAPABILITIES)
