"""Durability with a data dir: a snapshot plus an append-only JSON-lines journal.

Every committed transaction (and every user, token and schema change) is one journal
line, flushed and fsync'ed before the change is published. At start the snapshot and
journal are replayed, then folded into a fresh snapshot (atomic rename) and the journal
restarts empty. A torn last line (crash mid-write) is ignored: it was never acknowledged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from syncswim_lib.sandbox.salesforce.contract import dumps_exact, loads_exact


class Store:
    def __init__(self, data_dir: Path, fsync: bool = True) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = self.dir / "org-snapshot.json"
        self.journal_path = self.dir / "org-journal.jsonl"
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def load(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        snapshot = None
        if self.snapshot_path.exists():
            snapshot = loads_exact(self.snapshot_path.read_text("utf-8"))
        entries: list[dict[str, Any]] = []
        if self.journal_path.exists():
            with self.journal_path.open("r", encoding="utf-8") as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break  # torn write
                    entries.append(loads_exact(line))
        return snapshot, entries

    def append(self, entry: Mapping[str, Any]) -> None:
        line = dumps_exact(entry) + "\n"
        with self._lock:
            if self._file is None:
                self._file = self.journal_path.open("a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        tmp = self.snapshot_path.with_suffix(".tmp")
        with self._lock:
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(dumps_exact(state))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.snapshot_path)
            if self._file is not None:
                self._file.close()
            self._file = self.journal_path.open("w", encoding="utf-8")
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
