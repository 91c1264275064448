"""`dagster dev` with the shipped dagster.yaml in a fresh DAGSTER_HOME, for the tests that
need the sensor daemon and real run processes (the streaming run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from syncswim_lib.sandbox.demo import stop_dagster
from syncswim_lib.sandbox.servers import free_port

REPO = Path(__file__).resolve().parents[2]


class DagsterDev:
    def __init__(self, workdir: Path, project: Path) -> None:
        self.home = workdir / "dagster_home"
        self.home.mkdir()
        shutil.copy(REPO / "dagster.yaml", self.home / "dagster.yaml")
        self.env = {**os.environ, "DAGSTER_HOME": str(self.home), "SYNCSWIM_PROJECT": str(project)}
        self.log_path = workdir / "dagster.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DagsterDev:
        # a fresh SQLite instance created by several processes at once can break
        subprocess.run(
            [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get()"],
            check=True,
            env=self.env,
        )
        dagster_bin = str(Path(sys.executable).with_name("dagster"))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [dagster_bin, "dev", "-w", str(REPO / "workspace.yaml"), "-p", str(free_port())],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def instance(self) -> Any:
        from dagster import DagsterInstance

        return DagsterInstance.from_config(str(self.home))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        dagster_bin = str(Path(sys.executable).with_name("dagster"))
        return subprocess.run(
            [dagster_bin, *args, "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None:
            stop_dagster(self.proc)
            self.proc = None
