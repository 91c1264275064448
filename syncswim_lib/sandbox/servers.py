"""Private PostgreSQL and MariaDB/MySQL servers started from the installed binaries.

Used by `syncswim sandbox`, the demo and the test fixtures. Each server gets its own data
directory, a free port on 127.0.0.1 and the settings change capture needs; the machine's
own database services are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from syncswim_lib.errors import FatalError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.05)
    raise FatalError(f"timed out after {timeout:.0f}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    # a server we started ourselves stays a zombie until reaped
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("Z"):
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_pg_bindir() -> Path:
    """Debian keeps the server binaries in a versioned folder, not on PATH: look in both."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    for c in candidates:
        if (Path(c) / "postgres").exists() and (Path(c) / "initdb").exists():
            return Path(c)
    found = shutil.which("postgres")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    raise FatalError(
        "PostgreSQL server binaries (postgres, initdb) not found: run scripts/setup.sh "
        "or install the 'postgresql' package"
    )


def _which_any(*names: str) -> str:
    for n in names:
        p = shutil.which(n) or (f"/usr/sbin/{n}" if Path(f"/usr/sbin/{n}").exists() else None)
        if p:
            return p
    raise FatalError(
        f"none of {', '.join(names)} found: run scripts/setup.sh or install 'mariadb-server'"
    )


def _unprivileged_user(preferred: str) -> str | None:
    """Database servers refuse to run as root: pick the account to run them as."""
    if os.geteuid() != 0:
        return None
    for name in (preferred, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise FatalError(f"running as root and no user {preferred!r} to run the server as")


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for n in dirs + files:
            os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise FatalError(f"{what} failed (exit {proc.returncode}): {tail}")


def make_reachable(path: Path) -> None:
    """The server runs as an unprivileged user: every folder above its data must be
    traversable (a private temp dir is 0700)."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
        except OSError:
            continue
        if p.stat().st_uid == os.geteuid() and not mode & 0o001:
            os.chmod(p, mode | 0o011)


@dataclass(frozen=True)
class ServerInfo:
    kind: str  # "postgres" | "mysql"
    port: int
    data_dir: str
    dsn: str


class PostgresServer:
    """A private PostgreSQL with wal_level=logical, trust auth, superuser `postgres`.

    `settings` are appended to postgresql.conf after ours, so they win (tests start a
    misconfigured server with `{"wal_level": "replica"}`)."""

    def __init__(
        self, base_dir: Path, port: int | None = None, settings: Mapping[str, str] | None = None
    ) -> None:
        self.settings = dict(settings or {})
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "pgdata"
        self.sock_dir = self.base_dir / "pgsock"
        self.port = port or free_port()
        self.user = _unprivileged_user("postgres")
        self.bindir = find_pg_bindir()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def info(self) -> ServerInfo:
        return ServerInfo("postgres", self.port, str(self.data_dir), self.dsn)

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.sock_dir.mkdir(exist_ok=True)
        if self.user:
            make_reachable(self.base_dir)
            _chown_tree(self.base_dir, self.user)
        _run(
            _as_user(
                self.user,
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
            ),
            "initdb",
        )
        conf = (
            "\n# Sync or Swim sandbox\n"
            "wal_level = logical\nmax_replication_slots = 64\nmax_wal_senders = 16\n"
            "listen_addresses = '127.0.0.1'\n"
            # fsync off is safe enough for throw-away data; synchronous_commit stays on,
            # because logical decoding only sees WAL once it is flushed
            "fsync = off\n"
            "full_page_writes = off\nmax_connections = 200\n"
            "shared_buffers = 64MB\ntimezone = 'UTC'\n"
            # a stopped sync must not fill the disk: `syncswim doctor` asks for a bound
            "max_slot_wal_keep_size = '4GB'\n"
        ) + "".join(f"{name} = {value}\n" for name, value in self.settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(conf)

    def start(self, timeout: float = 30) -> None:
        self.init()
        log = self.base_dir / "postgres.log"
        if self.user:
            _chown_tree(self.base_dir, self.user)
        _run(
            _as_user(
                self.user,
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "-o",
                    f"-p {self.port} -k {self.sock_dir}",
                    "start",
                ],
            ),
            f"starting PostgreSQL (log: {log})",
        )
        wait_until(lambda: port_open(self.port), timeout, f"PostgreSQL on port {self.port}")

    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            return False
        return pid_alive(pid)

    def stop(self) -> None:
        if not self.running():
            return
        subprocess.run(
            _as_user(
                self.user,
                [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            ),
            check=False,
            capture_output=True,
            text=True,
        )


class MariaDBServer:
    """A private MariaDB/MySQL with a ROW binlog, FULL row images and FULL row metadata.

    `binlog=False` starts it without the binary log; `settings` are added to its my.cnf
    after ours, so they win (tests start misconfigured servers with them)."""

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        *,
        binlog: bool = True,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.binlog = binlog
        self.settings = dict(settings or {})
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "mydata"
        self.port = port or free_port()
        self.user = _unprivileged_user("mysql")
        self.cnf = self.base_dir / "my.cnf"
        self.pid_file = self.base_dir / "mysqld.pid"
        self.server_bin = _which_any("mariadbd", "mysqld")
        self.is_mariadb = "mariadb" in Path(self.server_bin).name

    @property
    def dsn(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/"

    def info(self) -> ServerInfo:
        return ServerInfo("mysql", self.port, str(self.data_dir), self.dsn)

    def _write_cnf(self) -> None:
        lines = [
            "[mysqld]",
            f"datadir={self.data_dir}",
            f"port={self.port}",
            "bind-address=127.0.0.1",
            f"socket={self.base_dir / 'mysqld.sock'}",
            f"pid-file={self.pid_file}",
            f"log-error={self.base_dir / 'mysqld.log'}",
            # private temp files: a shared /tmp may be cleaned under a running server
            f"tmpdir={self.base_dir / 'tmp'}",
            "server-id=1",
            "log-bin=binlog" if self.binlog else "skip-log-bin",
            "binlog_format=ROW",
            # seven days, as `syncswim doctor` advises: the disk does not fill
            "binlog_expire_logs_seconds=604800",
            "binlog_row_image=FULL",
            "character-set-server=utf8mb4",
            "collation-server=utf8mb4_bin",
            "default-time-zone='+00:00'",
            "skip-name-resolve",
            # test instance: durability traded for speed, never used for real data
            "sync_binlog=0",
            "innodb_flush_log_at_trx_commit=2",
            "innodb_buffer_pool_size=64M",
            "max_connections=300",
        ]
        if self.is_mariadb:
            lines += ["binlog_row_metadata=FULL", "binlog_annotate_row_events=ON"]
        else:
            lines += ["binlog_row_metadata=FULL"]
        if self.user:
            lines.append(f"user={self.user}")
        lines += [f"{name}={value}" for name, value in self.settings.items()]
        self.cnf.write_text("\n".join(lines) + "\n")

    def init(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "tmp").mkdir(exist_ok=True)
        self._write_cnf()
        if (self.data_dir / "mysql").exists():
            return
        self.data_dir.mkdir(exist_ok=True)
        if self.user:
            make_reachable(self.base_dir)
            _chown_tree(self.base_dir, self.user)
        install = _which_any("mariadb-install-db", "mysql_install_db")
        argv = [
            install,
            f"--defaults-file={self.cnf}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if self.user:
            argv.append(f"--user={self.user}")
        _run(argv, "mariadb-install-db")

    def start(self, timeout: float = 30) -> None:
        self.init()
        if self.user:
            _chown_tree(self.base_dir, self.user)
        # own session: Ctrl-C in a terminal must reach our supervisor, not kill the server
        # mid-write
        with open(self.base_dir / "mysqld.out", "ab") as log:
            subprocess.Popen(
                [self.server_bin, f"--defaults-file={self.cnf}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: port_open(self.port), timeout, f"MariaDB on port {self.port}")

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def stop(self, timeout: float = 30) -> None:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), timeout, f"MariaDB (pid {pid}) to stop")
