"""An in-memory database and its connector, for planner, merge and property tests that
need no server: `MemoryDatabase` (tables, transactions, change log, markers, locks, an
injectable clock) and `MemoryConnector` (the Connector Protocol over it)."""

from syncswim_lib.connectors.memory.connector import MemoryConnector
from syncswim_lib.connectors.memory.database import (
    MICROSECOND,
    SECOND,
    ManualClock,
    MemoryDatabase,
    SystemClock,
    Transaction,
)
from syncswim_lib.connectors.memory.values import IntegrityError

__all__ = [
    "MICROSECOND",
    "SECOND",
    "IntegrityError",
    "ManualClock",
    "MemoryConnector",
    "MemoryDatabase",
    "SystemClock",
    "Transaction",
]
