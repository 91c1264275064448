from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import TwoDbs


@pytest.fixture
def dbs(
    pg_dsn: str, mysql_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TwoDbs]:
    d = TwoDbs(pg_dsn, mysql_dsn, tmp_path)
    d.create()
    for k, v in d.env().items():
        monkeypatch.setenv(k, v)
    yield d
    d.close()
