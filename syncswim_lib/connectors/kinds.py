"""How an endpoint kind describes itself: the value each `<package>/kind.py` exposes.

The config loader reads these while it loads a declaration (which settings a kind takes,
what it calls a table, how it is captured), so this module and every `kind.py` import
only light modules (values, errors, the envelope, config primitives such as the timeout
keys): never a driver nor the connector itself, which `KindDescription.open` imports
when an endpoint is opened. `Capabilities` lives here for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from syncswim_lib.envelope import Position

if TYPE_CHECKING:
    from syncswim_lib.config.models import Endpoint
    from syncswim_lib.config.secrets import Secret
    from syncswim_lib.connectors.base import Connector, ContinuousReader

CaptureMethod = Literal["stream", "poll"]


@dataclass(frozen=True)
class Capabilities:
    change_stream: bool  # CDC (slot/binlog/CometD) rather than polling
    hard_deletes: bool  # deletes are captured
    upsert_by_external_id: bool
    # our own writes come back marked with `Change.origin` (a polled table can mark them
    # only through a declared written_by column: that is per table, not this)
    origin_tagging: bool
    # implements `base.BatchMarkers`: each apply commits with a marker of its batch id
    batch_markers: bool
    # the most rows (inserts, updates and deletes together) one `apply` is handed
    max_batch_rows: int = 5000

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1, got {self.max_batch_rows}")


@dataclass(frozen=True)
class Settings:
    """The keys of an endpoint block besides `kind`."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    # secret even when written literally: never shown in a repr or an error
    secret: frozenset[str] = frozenset()
    # a file's path: a relative one is taken from the declaration's folder
    paths: frozenset[str] = frozenset()

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


# (the endpoint's connector, sync, tables, the stored position, of the reading's type):
# the continuous reader of the sync's stream; imports the reader when called
StreamOpener = Callable[["Connector", str, Sequence[str], "Position | None"], "ContinuousReader"]


@dataclass(frozen=True)
class Reading:
    """One way a kind's changes are read, and what the connector it opens then is."""

    method: CaptureMethod
    # the positions capture stores (a type, or several when one reading stores more
    # than one kind of position): a stored position of another type is refused
    position: type[Position] | tuple[type[Position], ...]
    capabilities: Capabilities
    # the reader `run: streaming` uses (the replication protocol, a blocking binlog
    # read); without one a sync runs micro_batch
    stream: StreamOpener | None = None

    @property
    def continuous(self) -> bool:
        return self.stream is not None


# the literal settings of an endpoint block (`{env: ...}` ones are Secrets, read later)
# and its key path: raises ConfigError naming the key of a bad value
SettingsCheck = Callable[["Mapping[str, Secret | str]", str], None]


def _no_check(settings: Mapping[str, Secret | str], path: str) -> None:
    return None


@dataclass(frozen=True)
class KindDescription:
    name: str
    settings: Settings
    # the key naming an entity side's table, its pattern and an example for errors
    table_word: Literal["table", "object"]
    table_pattern: re.Pattern[str]
    table_example: str
    # how changes are read: the first is the default, `capture: <method>` picks another
    readings: tuple[Reading, ...]
    # a live connector for an endpoint of this kind (secrets resolved now): imports the
    # connector's package, so only called when an endpoint is opened
    open: Callable[[Endpoint], Connector]
    # refuses bad literal settings at load rather than at the first connect
    check: SettingsCheck = _no_check

    def __post_init__(self) -> None:
        if not self.readings:
            raise ValueError(f"kind {self.name} declares no way to read its changes")

    @property
    def capture_methods(self) -> tuple[CaptureMethod, ...]:
        return tuple(r.method for r in self.readings)

    def reading(self, method: str | None) -> Reading:
        """The reading `capture: <method>` chooses (None: the default); KeyError for a
        method the kind does not have."""
        if method is None:
            return self.readings[0]
        for r in self.readings:
            if r.method == method:
                return r
        raise KeyError(method)


TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")
TABLE_EXAMPLE = "'customers' or 'public.customers'"


def resolved(endpoint: Endpoint, keys: Iterable[str]) -> dict[str, str]:
    """Those of `keys` the endpoint declares, secrets read now (at connect time)."""
    return {k: endpoint.resolve_setting(k) for k in keys if k in endpoint.settings}
