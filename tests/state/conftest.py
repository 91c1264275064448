"""The same tests run on both backends: a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncswim_lib.envelope import Change, Op, PgPosition
from syncswim_lib.state.postgres import PostgresStateStore
from syncswim_lib.state.sqlite import SqliteStateStore
from syncswim_lib.state.sqlstore import SqlStateStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL-ish location for a store of the parametrised backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    else:
        yield request.getfixturevalue("pg_dsn")


def open_backend(location: str) -> SqlStateStore:
    if location.startswith("postgresql://"):
        return PostgresStateStore(location)
    return SqliteStateStore(location)


@pytest.fixture
def store(backend: str) -> Iterator[SqlStateStore]:
    s = open_backend(backend)
    yield s
    s.close()


@pytest.fixture
def open_another(backend: str) -> Iterator[Callable[[], SqlStateStore]]:
    """Opens more store objects on the same backend (as other processes would)."""
    opened: list[SqlStateStore] = []

    def open_() -> SqlStateStore:
        opened.append(open_backend(backend))
        return opened[-1]

    yield open_
    for s in opened:
        s.close()


def _change(
    n: int,
    *,
    table: str = "public.customers",
    op: Op = Op.INSERT,
    after: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    lsn: int = 1000,
) -> Change:
    """A change of customer `n` at WAL position (lsn, n)."""
    key = {"id": n} if key is None else key
    return Change(
        op=op,
        table=table,
        key=key,
        after={**key, "name": f"c{n}"} if after is None else after,
        before=None,
        position=PgPosition(lsn, n),
        commit_ts=T0 + timedelta(seconds=n),
        detected_at=T0 + timedelta(seconds=n, milliseconds=5),
    )


MakeChange = Callable[..., Change]


@pytest.fixture
def make_change() -> MakeChange:
    """`make_change(n, table=..., op=..., after=..., key=..., lsn=...)`: customer n's change."""
    return _change
