"""The streaming run's reports to Dagster, written by a thread of their own.

Writing an event to Dagster's event log costs tens of milliseconds (about 20-100 ms for a
materialisation with SQLite storage on a 2-vCPU machine, a log line a third of that), as
much as a whole batch of a hundred changes. Written from the streaming loop, that cost
came between every two batches and the loop fell behind under a steady stream. So the
loop hands each batch to this reporter and goes on; the reporter writes an entity's
materialisation at most once every `report_every_ms`, with the batches that closed
meanwhile in one materialisation (`pipeline/report.combine`: counts added, change rows up
to the cap, every conflict and failure line), whose metadata names them
(`streaming_batch` the last, `streaming_batches` how many). A batch after a quiet spell is
reported at once, on its own.

It is the only thread that writes to the run's Dagster log while the run streams (the
readers' warnings come through it too), and `close` writes what is left before the op
returns, so a run's log holds every batch it applied.
"""

# no `from __future__ import annotations`: kept like the other Dagster modules

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import AssetMaterialization, OpExecutionContext

from syncswim_defs.metadata import log_events, report_metadata
from syncswim_defs.naming import entity_key
from syncswim_lib.pipeline.report import EntityReport, combine
from syncswim_lib.pipeline.streaming import Batch

CLOSE_WAIT_S = 60.0  # the longest `close` waits for the reports still queued


@dataclass(frozen=True)
class _Line:
    level: str  # "info" or "warning"
    message: str


_STOP = object()


class Reporter:
    """Batches and log lines of one streaming run, written to its Dagster log in order."""

    def __init__(self, context: OpExecutionContext, sync: str, every_s: float) -> None:
        self.context = context
        self.sync = sync
        self.every_s = every_s
        self.reported = 0  # materialisations written
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"{sync}-report", daemon=True)
        self._thread.start()

    # -- the loop's side -------------------------------------------------------------------
    def batch(self, batch: Batch) -> None:
        self._raise_failure()
        self._queue.put(batch)

    def info(self, message: str) -> None:
        self._queue.put(_Line("info", message))

    def warning(self, message: str) -> None:
        self._queue.put(_Line("warning", message))

    def close(self) -> None:
        """Write what is queued and stop; raises what writing to Dagster raised."""
        self._queue.put(_STOP)
        self._thread.join(CLOSE_WAIT_S)
        if self._thread.is_alive():
            raise RuntimeError(
                f"{self.sync}: the run's reports were not written within {CLOSE_WAIT_S:.0f} s"
            )
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(
                f"{self.sync}: writing the run's reports to Dagster failed: {self._failure}"
            ) from self._failure

    # -- the reporter's thread ---------------------------------------------------------------
    def _loop(self) -> None:
        held: list[Batch] = []
        last = -float("inf")
        try:
            while True:
                wait = None if not held else max(0.0, last + self.every_s - time.monotonic())
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    if held:
                        self._write(held)
                    return
                if isinstance(item, _Line):
                    log = self.context.log
                    (log.warning if item.level == "warning" else log.info)(item.message)
                elif isinstance(item, Batch):
                    held.append(item)
                if held and time.monotonic() - last >= self.every_s:
                    self._write(held)
                    held = []
                    last = time.monotonic()
        except BaseException as exc:
            self._failure = exc
            logging.getLogger(__name__).exception("%s: reporting failed", self.sync)

    def _write(self, batches: Sequence[Batch]) -> None:
        names = list(dict.fromkeys(n for b in batches for n in b.reports))
        for name in names:
            mine = [b for b in batches if name in b.reports]
            reports: list[EntityReport] = [b.reports[name] for b in mine]
            report = reports[0] if len(reports) == 1 else combine(reports)
            meta = report_metadata(report)
            meta.update(
                {
                    "streaming_batch": mine[-1].number,
                    "streaming_batches": len(mine),
                    "streaming_run": self.context.run_id,
                }
            )
            self.context.log_event(
                AssetMaterialization(asset_key=entity_key(self.sync, name), metadata=meta)
            )
            self.reported += 1
            # an op cannot evaluate the assets' checks: the conflicts and failures are its
            # log's WARNING and ERROR lines, the checks follow the next asset run
            log_events(self.context.log, report)
        captured = sum(b.captured for b in batches)
        writes = sum(r.writes for b in batches for r in b.reports.values())
        first, last = batches[0].number, batches[-1].number
        which = f"batch {last}" if first == last else f"batches {first}-{last}"
        self.context.log.info(
            f"{self.sync}: {which}: {captured} changes journaled, {writes} writes "
            f"({', '.join(names)})"
        )
