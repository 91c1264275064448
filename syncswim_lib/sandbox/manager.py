"""`syncswim sandbox up|down|status`: a private PostgreSQL, MariaDB and Salesforce emulator.

Each component's own files say whether it runs (postmaster.pid, mysqld.pid + my.cnf,
salesforce/process.json), so `up` adopts what already runs and `status`/`down` work even
when sandbox.json is gone. sandbox.json and sandbox.env are reports written by `up`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shlex
import signal
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from syncswim_lib.errors import FatalError
from syncswim_lib.sandbox import salesforce_process as sfp
from syncswim_lib.sandbox.envfile import write_env, write_private_json
from syncswim_lib.sandbox.servers import (
    MariaDBServer,
    PostgresServer,
    free_port,
    make_reachable,
    pid_alive,
    port_open,
    wait_until,
)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
JSON_NAME = "sandbox.json"
ENV_NAME = "sandbox.env"


@dataclass(frozen=True)
class Component:
    kind: str  # "postgres" | "mysql" | "salesforce"
    pid: int
    port: int
    data_dir: str
    url: str  # the DSN of a database, the instance URL of the emulator


@dataclass(frozen=True)
class SandboxInfo:
    dir: Path
    postgres: Component
    mysql: Component
    salesforce: sfp.EmulatorProcess | None
    salesforce_note: str | None  # why the emulator is not running, when it is not
    started: tuple[str, ...]  # kinds this call started; the others were already running

    @property
    def env_file(self) -> Path:
        return self.dir / ENV_NAME

    @property
    def json_file(self) -> Path:
        return self.dir / JSON_NAME

    def env(self) -> dict[str, str | None]:
        sf = self.salesforce
        return {
            "SYNCSWIM_PG_DSN": self.postgres.url,
            "SYNCSWIM_MYSQL_DSN": self.mysql.url,
            "SF_URL": sf.url if sf else None,
            "SF_TOKEN": sf.token if sf else None,
            "SF_CA_BUNDLE": sf.ca_path if sf else None,
        }


@dataclass(frozen=True)
class ComponentStatus:
    kind: str
    pid: int | None
    port: int | None
    pid_alive: bool
    port_open: bool

    @property
    def up(self) -> bool:
        return self.pid_alive and self.port_open


@dataclass(frozen=True)
class SandboxStatus:
    dir: Path
    components: tuple[ComponentStatus, ...]  # postgres, mysql, salesforce

    @property
    def all_up(self) -> bool:
        """Both databases, and the emulator when it was started."""
        return all(c.up for c in self.components if c.kind != "salesforce" or c.pid is not None)

    @property
    def anything_running(self) -> bool:
        return any(c.pid_alive for c in self.components)


# --- where each component records itself -------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except ValueError:
        return None


def _pg_record(d: Path) -> tuple[int | None, int | None]:
    """pid and port while it runs (postmaster.pid: pid, data dir, start time, port, ...);
    after a stop, the port it last used (postmaster.opts keeps the command line)."""
    data = d / "postgres" / "pgdata"
    lines = _read_lines(data / "postmaster.pid")
    if len(lines) > 3:
        return _int(lines[0]), _int(lines[3])
    opts = shlex.split(" ".join(_read_lines(data / "postmaster.opts")))
    port = opts[opts.index("-p") + 1] if "-p" in opts[:-1] else None
    return None, _int(port)


def _mysql_record(d: Path) -> tuple[int | None, int | None]:
    pid = _int(" ".join(_read_lines(d / "mysql" / "mysqld.pid")))
    ports = [
        ln.split("=", 1)[1] for ln in _read_lines(d / "mysql" / "my.cnf") if ln.startswith("port=")
    ]
    return pid, (_int(ports[0]) if ports else None)


def _status_of(kind: str, d: Path) -> ComponentStatus:
    if kind == "postgres":
        pid, port = _pg_record(d)
    elif kind == "mysql":
        pid, port = _mysql_record(d)
    else:
        rec = sfp.read_record(d / "salesforce")
        pid, port = (rec.pid, rec.port) if rec else (None, None)
    alive = pid is not None and (sfp.is_emulator(pid) if kind == "salesforce" else pid_alive(pid))
    return ComponentStatus(kind, pid, port, alive, port is not None and port_open(port))


# --- the directory --------------------------------------------------------------------------


def _check_dir(d: Path, create: bool) -> Path:
    d = Path(d)
    if d.exists() and not d.is_dir():
        raise FatalError(f"sandbox directory {d} exists and is not a directory")
    if create:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FatalError(f"cannot create sandbox directory {d}: {e.strerror}") from e
    return d.resolve() if d.exists() else d


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Two `up`s at once (two terminals, `make demo` twice) must not start two servers."""
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _free(port: int | None) -> int | None:
    """Keep the last run's port when it is still free, so DSNs survive a down/up."""
    if port is None:
        return None
    with socket.socket() as s:
        # as the servers do: connections closed at shutdown linger in TIME_WAIT on the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


# --- up -------------------------------------------------------------------------------------


def _ensure_db(kind: str, d: Path, started: list[str]) -> Component:
    base = d / kind
    st = _status_of(kind, d)
    cls = PostgresServer if kind == "postgres" else MariaDBServer
    if st.up and st.pid is not None and st.port is not None:
        running = cls(base, port=st.port)
        return Component(kind, st.pid, st.port, str(running.data_dir), running.dsn)
    server = cls(base, port=_free(st.port))
    try:
        if server.user and base.is_dir():
            # the servers run unprivileged: something (a pytest run, a umask) may have closed
            # a parent folder since the data dir was made
            make_reachable(base)
        server.start(timeout=START_TIMEOUT)
    except OSError as e:
        raise FatalError(f"cannot start {kind} in {base}: {e}") from e
    started.append(kind)
    # mysqld writes its pid file on its own schedule; the port answering does not imply it
    wait_until(lambda: _status_of(kind, d).up, START_TIMEOUT, f"{kind} to record its pid")
    st = _status_of(kind, d)
    assert st.pid is not None and st.port is not None
    return Component(kind, st.pid, st.port, str(server.data_dir), server.dsn)


def _ensure_salesforce(
    d: Path, wanted: bool, started: list[str]
) -> tuple[sfp.EmulatorProcess | None, str | None]:
    if _status_of("salesforce", d).up:
        return sfp.read_record(d / "salesforce"), None
    # the record of an emulator that died would make `status` expect it forever
    (d / "salesforce" / sfp.RECORD).unlink(missing_ok=True)
    if not wanted:
        return None, "not started (--no-salesforce)"
    try:
        available = importlib.util.find_spec(sfp.MODULE + ".__main__") is not None
    except ImportError:
        available = False
    if not available:
        return None, f"not available in this build: {sfp.MODULE} serve"
    data = d / "salesforce"
    port = _free(sfp.last_port(data)) or free_port()
    try:
        emu = sfp.launch(sfp.serve_argv(port, data), data, port, START_TIMEOUT)
    except (FatalError, OSError) as e:
        return None, f"the Salesforce emulator did not start: {e}"
    started.append("salesforce")
    return emu, None


def sandbox_up(dir: Path, salesforce: bool = True) -> SandboxInfo:
    """Start what is not running yet (idempotent); write sandbox.json and sandbox.env."""
    d = _check_dir(dir, create=True)
    with _locked(d):
        started: list[str] = []
        try:
            pg = _ensure_db("postgres", d, started)
            my = _ensure_db("mysql", d, started)
        except BaseException:
            # leave nothing half-up that this call started; what ran before keeps running
            _stop(d, started)
            raise
        sf, note = _ensure_salesforce(d, salesforce, started)
        info = SandboxInfo(d, pg, my, sf, note, tuple(started))
        comps: dict[str, Any] = {
            c.kind: {"pid": c.pid, "port": c.port, "data_dir": c.data_dir, "dsn": c.url}
            for c in (pg, my)
        }
        if sf is not None:
            comps["salesforce"] = asdict(sf)
        write_private_json(
            info.json_file,
            {
                "dir": str(d),
                "components": comps,
                "salesforce_note": note,
                "env_file": str(info.env_file),
            },
        )
        write_env(
            info.env_file,
            info.env(),
            header=f"Sync or Swim sandbox in {d}\nload with: . {info.env_file}",
        )
        return info


# --- down / status --------------------------------------------------------------------------


def _signal_and_wait(pid: int, what: str, sig: signal.Signals, then: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    try:
        wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT, f"{what} (pid {pid}) to stop")
    except FatalError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, then)
        wait_until(lambda: not pid_alive(pid), 5.0, f"{what} (pid {pid}) to stop")


def _stop(d: Path, kinds: list[str]) -> list[str]:
    """Stop the given kinds, emulator first; returns the problems (empty when all stopped).

    Databases get signals, not pg_ctl: pg_ctl would run as the server's user, which a parent
    folder's permissions can lock out of the data dir; a signal needs only the pid."""
    problems: list[str] = []
    for kind in ("salesforce", "mysql", "postgres"):
        st = _status_of(kind, d)
        if kind not in kinds or not st.pid_alive or st.pid is None:
            continue
        try:
            if kind == "salesforce":
                sfp.stop(st.pid, STOP_TIMEOUT)
            elif kind == "mysql":  # SIGTERM: clean shutdown; SIGKILL loses nothing committed
                _signal_and_wait(st.pid, "MariaDB", signal.SIGTERM, signal.SIGKILL)
            else:  # SIGINT: "fast" shutdown; SIGQUIT: "immediate", recovered at next start
                _signal_and_wait(st.pid, "PostgreSQL", signal.SIGINT, signal.SIGQUIT)
        except FatalError as e:
            problems.append(f"{kind}: {e}")
    return problems


def sandbox_down(dir: Path) -> None:
    """Stop everything `up` started and wait until the processes are gone. Data is kept."""
    d = _check_dir(dir, create=False)
    if not d.exists():
        return
    with _locked(d):
        problems = _stop(d, ["salesforce", "mysql", "postgres"])
        if problems:
            raise FatalError("sandbox down left processes running: " + "; ".join(problems))
        for name in (JSON_NAME, ENV_NAME, f"salesforce/{sfp.RECORD}"):
            (d / name).unlink(missing_ok=True)  # they describe a running sandbox


def sandbox_status(dir: Path) -> SandboxStatus:
    d = _check_dir(dir, create=False)
    return SandboxStatus(d, tuple(_status_of(k, d) for k in ("postgres", "mysql", "salesforce")))


# --- what the CLI prints ----------------------------------------------------------------------


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def run_up(dir: Path, salesforce: bool) -> int:
    info = sandbox_up(dir, salesforce)
    fresh = ", ".join(info.started) or "nothing, all were already running"
    print(f"sandbox in {_shown(info.dir)}: started {fresh}")
    for c in (info.postgres, info.mysql):
        print(f"  {c.kind:<11} pid {c.pid:<8} port {c.port:<6} {c.url}")
    if (sf := info.salesforce) is not None:
        print(f"  salesforce  pid {sf.pid:<8} port {sf.port:<6} {sf.url} (CA {sf.ca_path})")
    if info.salesforce_note:
        print(f"  salesforce  {info.salesforce_note}")
    print(f"settings (tokens included) in {_shown(info.env_file)}; load them with:")
    print(f"  . {_shown(info.env_file)}")
    print(f"stop with: syncswim sandbox down --dir {_shown(info.dir)}")
    return 0


def run_down(dir: Path) -> int:
    running = [c.kind for c in sandbox_status(dir).components if c.pid_alive]
    sandbox_down(dir)
    what = f"stopped {', '.join(running)}" if running else "nothing was running"
    print(f"sandbox in {_shown(Path(dir))}: {what} (data kept; `sandbox up` resumes it)")
    return 0


def run_status(dir: Path) -> int:
    status = sandbox_status(dir)
    for c in status.components:
        if c.pid is None and c.kind == "salesforce":
            continue
        state = "up" if c.up else "DOWN"
        detail = f"pid {c.pid} {'alive' if c.pid_alive else 'gone'}" if c.pid else "no pid"
        port = f"port {c.port} {'open' if c.port_open else 'closed'}" if c.port else "no port"
        print(f"  {c.kind:<11} {state:<5} {detail}, {port}")
    verdict = (
        "all up"
        if status.all_up
        else ("partly running" if status.anything_running else "nothing running")
    )
    print(f"sandbox in {_shown(status.dir)}: {verdict}")
    return 0 if status.all_up else 1
