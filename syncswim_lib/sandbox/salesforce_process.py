"""The Salesforce emulator as a detached process: launch, announcement, record, stop.

The emulator (`python -m syncswim_lib.sandbox.salesforce serve --port N --data-dir D`)
prints one JSON line (url, ca_path, tokens) once it serves, then runs until SIGTERM. It runs
in its own session so it outlives the `syncswim sandbox up` that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncswim_lib.errors import FatalError
from syncswim_lib.sandbox.envfile import write_private_json
from syncswim_lib.sandbox.servers import pid_alive, wait_until

MODULE = "syncswim_lib.sandbox.salesforce"
RECORD = "process.json"
LAST_PORT = "last_port"  # outlives the record, so SF_URL stays the same across down/up


@dataclass(frozen=True)
class EmulatorProcess:
    pid: int
    port: int
    data_dir: str
    url: str
    ca_path: str
    token: str


def serve_argv(port: int, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", MODULE, "serve", "--port", str(port), "--data-dir", str(data_dir)]


def pick_token(tokens: Any) -> str:
    """The announcement's tokens: the integration user's when named, else the first."""
    if isinstance(tokens, str) and tokens:
        return tokens
    if isinstance(tokens, list) and tokens:
        return pick_token(tokens[0])
    if isinstance(tokens, dict) and tokens:
        for name in ("integration", "sync", "admin", "default", "access_token", "token"):
            if name in tokens:
                return pick_token(tokens[name])
        return pick_token(next(iter(tokens.values())))
    raise ValueError(f"no token in {tokens!r}")


def is_emulator(pid: int) -> bool:
    """Guards against a recycled pid before we signal it or report it as ours."""
    try:
        return pid_alive(pid) and MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def read_record(data_dir: Path) -> EmulatorProcess | None:
    try:
        rec = json.loads((data_dir / RECORD).read_text())
        return EmulatorProcess(
            int(rec["pid"]),
            int(rec["port"]),
            str(data_dir),
            rec["url"],
            rec["ca_path"],
            rec["token"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def last_port(data_dir: Path) -> int | None:
    try:
        return int((data_dir / LAST_PORT).read_text())
    except (OSError, ValueError):
        return None


def stop(pid: int, timeout: float) -> None:
    """Stop the emulator and anything it forked (its process group), then make sure."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(FatalError):
            wait_until(lambda: not pid_alive(pid), wait, "")
            return
    raise FatalError(f"the Salesforce emulator (pid {pid}) did not stop")


def launch(argv: list[str], data_dir: Path, port: int, timeout: float) -> EmulatorProcess:
    """Start argv detached, wait for its JSON announcement on stdout, record it in
    data_dir/process.json. Raises FatalError (with the log's tail) when it does not come up."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # stdout goes to a file, not a pipe: the emulator outlives us and must never hit EPIPE
    out_path, log_path = data_dir / "serve.out", data_dir / "serve.log"
    with open(out_path, "wb") as out, open(log_path, "wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while "\n" not in (text := out_path.read_text(errors="replace")):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip()[-1500:]
            raise FatalError(
                f"exited with code {proc.returncode} before announcing itself"
                f"{': ' + tail if tail else ''} (log: {log_path})"
            )
        if time.monotonic() > deadline:
            stop(proc.pid, 5.0)
            raise FatalError(f"no announcement within {timeout:.0f}s (log: {log_path})")
        time.sleep(0.05)
    line = text.split("\n", 1)[0]
    try:
        announced = json.loads(line)
        emu = EmulatorProcess(
            proc.pid,
            port,
            str(data_dir),
            str(announced["url"]),
            str(announced["ca_path"]),
            pick_token(announced["tokens"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        stop(proc.pid, 5.0)
        raise FatalError(f"unexpected announcement {line[:200]!r}: {e}") from e
    write_private_json(
        data_dir / RECORD,
        {
            "pid": emu.pid,
            "port": port,
            "url": emu.url,
            "ca_path": emu.ca_path,
            "token": emu.token,
            "announced": announced,
        },
    )
    (data_dir / LAST_PORT).write_text(f"{port}\n")
    return emu
