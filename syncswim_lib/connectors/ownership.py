"""The optional connector role of a change stream that one state store owns (CDC sources
whose position a second store must not consume; see `pipeline/owner.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class StreamOwner:
    state_id: str
    state: str  # the store's URL, password redacted: how an error names it


@runtime_checkable
class OwnedStream(Protocol):
    def stream_owner(self, sync: str) -> StreamOwner | None:
        """The recorded owner of `sync`'s stream; None when there is none. Changes nothing."""
        ...

    def claim_stream(self, sync: str, owner: StreamOwner) -> StreamOwner:
        """Record `owner` unless another is recorded; returns the one recorded."""
        ...
