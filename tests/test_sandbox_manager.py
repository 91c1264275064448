"""`syncswim sandbox`: real servers started, queried through the env file, stopped."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest
import requests

from syncswim_lib.errors import FatalError
from syncswim_lib.sandbox import salesforce_process as sfp
from syncswim_lib.sandbox.envfile import read_env, render_env
from syncswim_lib.sandbox.manager import sandbox_down, sandbox_status, sandbox_up

SYNCSWIM = Path(sys.executable).parent / "syncswim"
SF_AVAILABLE = importlib.util.find_spec(sfp.MODULE + ".__main__") is not None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYNCSWIM), *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def sb_dir() -> Iterator[Path]:
    """Not under tmp_path: every pytest session that starts resets pytest-of-<user> to 0700,
    which locks the servers (run as their own users when we are root) out of their data."""
    top = Path(tempfile.mkdtemp(prefix="syncswim-sandbox-"))
    yield top / "sb"
    with contextlib.suppress(FatalError):
        sandbox_down(top / "sb")  # only matters when a test failed half-way
    shutil.rmtree(top, ignore_errors=True)


def gone(pid: int) -> bool:
    """Independent of the code under test: no such process, or a zombie awaiting its reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state in "ZX"


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def sourced(env_file: Path, *names: str) -> list[str]:
    """What a shell gets from `. sandbox.env`: the file is made for that, so test it that way."""
    script = f". '{env_file}'; " + "; ".join(f'printf "%s\\n" "${{{n}-<unset>}}"' for n in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.integration
@pytest.mark.slow
def test_up_query_status_down(sb_dir: Path) -> None:
    d = sb_dir
    info = sandbox_up(d)
    try:
        assert set(info.started) >= {"postgres", "mysql"}
        pg_dsn, my_dsn, sf_url, sf_ca = sourced(
            info.env_file, "SYNCSWIM_PG_DSN", "SYNCSWIM_MYSQL_DSN", "SF_URL", "SF_CA_BUNDLE"
        )
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        my = urlsplit(my_dsn)
        conn2 = pymysql.connect(host=my.hostname, port=my.port, user=my.username)
        with conn2.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format")
            assert cur.fetchone() == (1, "ROW")
        conn2.close()
        if SF_AVAILABLE:
            assert info.salesforce is not None, info.salesforce_note
            assert sf_url == info.salesforce.url
            token = read_env(info.env_file)["SF_TOKEN"]
            r = requests.get(
                f"{sf_url}/services/data/v62.0/sobjects/",
                headers={"Authorization": f"Bearer {token}"},
                verify=sf_ca,
                timeout=30,
            )
            assert r.status_code == 200 and "sobjects" in r.json()
        else:
            assert info.salesforce is None and sf_url == "<unset>"
            assert info.salesforce_note and "not available in this build" in info.salesforce_note

        recorded = json.loads(info.json_file.read_text())["components"]
        assert recorded["postgres"]["dsn"] == pg_dsn and recorded["mysql"]["dsn"] == my_dsn
        status = sandbox_status(d)
        assert status.all_up, status
        assert cli("sandbox", "status", "--dir", str(d)).returncode == 0

        again = sandbox_up(d)  # idempotent: reports what runs, starts nothing
        assert again.started == ()
        assert (again.postgres, again.mysql) == (info.postgres, info.mysql)
        assert read_env(again.env_file)["SYNCSWIM_PG_DSN"] == pg_dsn
        out = cli("sandbox", "up", "--dir", str(d))
        assert out.returncode == 0 and "already running" in out.stdout, out
        assert str(info.postgres.port) in out.stdout and ". " in out.stdout
    finally:
        sandbox_down(d)

    pids = [c["pid"] for c in recorded.values()]
    ports = [c["port"] for c in recorded.values()]
    assert all(gone(p) for p in pids), pids
    assert all(port_closed(p) for p in ports), ports
    status = sandbox_status(d)
    assert not status.anything_running and not status.all_up
    assert not info.env_file.exists()
    out = cli("sandbox", "status", "--dir", str(d))
    assert out.returncode == 1 and "nothing running" in out.stdout, out

    # data and ports survive a down/up; a partial sandbox gets only what it lacks
    back = sandbox_up(d, salesforce=False)
    try:
        assert back.postgres.port == info.postgres.port and back.mysql.port == info.mysql.port
        assert set(back.started) == {"postgres", "mysql"}
        assert back.salesforce is None and back.salesforce_note == "not started (--no-salesforce)"
        assert sourced(back.env_file, "SF_URL") == ["<unset>"]
        assert sandbox_status(d).all_up
        full = sandbox_up(d)
        assert full.postgres == back.postgres and full.mysql == back.mysql
        if SF_AVAILABLE:
            assert full.started == ("salesforce",)
            assert full.salesforce is not None and info.salesforce is not None
            assert full.salesforce.port == info.salesforce.port
    finally:
        out = cli("sandbox", "down", "--dir", str(d))
    assert out.returncode == 0 and "stopped postgres, mysql" in out.stdout, out
    assert gone(back.postgres.pid) and gone(back.mysql.pid)
    assert full.salesforce is None or gone(full.salesforce.pid)


def test_status_of_an_empty_dir(tmp_path: Path) -> None:
    status = sandbox_status(tmp_path)
    assert not status.all_up and not status.anything_running
    assert [c.kind for c in status.components] == ["postgres", "mysql", "salesforce"]
    out = cli("sandbox", "status", "--dir", str(tmp_path))
    assert out.returncode == 1 and "nothing running" in out.stdout, out
    assert cli("sandbox", "down", "--dir", str(tmp_path / "never")).returncode == 0


@pytest.mark.parametrize("action", ["up", "down", "status"])
def test_dir_that_is_a_file(tmp_path: Path, action: str) -> None:
    f = tmp_path / "afile"
    f.write_text("")
    out = cli("sandbox", action, "--dir", str(f))
    assert out.returncode == 1, out
    assert f"sandbox directory {f} exists and is not a directory" in out.stderr, out
    assert "Traceback" not in out.stderr
    api: dict[str, Callable[[Path], object]] = {
        "up": sandbox_up,
        "down": sandbox_down,
        "status": sandbox_status,
    }
    with pytest.raises(FatalError, match="not a directory"):
        api[action](f)


@pytest.mark.integration
def test_failed_start_stops_what_it_started(sb_dir: Path) -> None:
    d = sb_dir
    d.mkdir()
    (d / "mysql").write_text("in the way")  # MariaDB cannot make its directory
    with pytest.raises(FatalError, match="cannot start mysql"):
        sandbox_up(d, salesforce=False)
    status = sandbox_status(d)
    pg = status.components[0]
    assert pg.kind == "postgres" and pg.port is not None  # it was started ...
    assert not status.anything_running and port_closed(pg.port)  # ... and stopped again
    assert not (d / "sandbox.env").exists()


# --- the Salesforce emulator's launch protocol, with stand-in processes ----------------------

# is_emulator() looks for the module name on the command line: the stand-ins carry it too
TAG = f"# {sfp.MODULE} stand-in\n"


def stand_in(code: str) -> list[str]:
    return [sys.executable, "-c", TAG + textwrap.dedent(code)]


def test_launch_reads_the_announcement_and_stop_ends_it(tmp_path: Path) -> None:
    argv = stand_in("""
        import json, time
        print(json.dumps({"url": "https://127.0.0.1:1", "ca_path": "/ca.pem",
                          "tokens": {"human": "t-human", "integration": "t-int"}}), flush=True)
        time.sleep(600)
    """)
    emu = sfp.launch(argv, tmp_path, 1, timeout=30)
    try:
        assert (emu.url, emu.ca_path, emu.token) == ("https://127.0.0.1:1", "/ca.pem", "t-int")
        assert sfp.read_record(tmp_path) == emu and sfp.last_port(tmp_path) == 1
        assert sfp.is_emulator(emu.pid) and not gone(emu.pid)
    finally:
        sfp.stop(emu.pid, timeout=10)
    assert gone(emu.pid) and not sfp.is_emulator(emu.pid)


def test_launch_reports_an_early_exit_with_its_log(tmp_path: Path) -> None:
    argv = stand_in("import sys; print('port already taken', file=sys.stderr); sys.exit(3)")
    with pytest.raises(FatalError, match=r"exited with code 3 .*port already taken"):
        sfp.launch(argv, tmp_path, 1, timeout=30)
    assert sfp.read_record(tmp_path) is None


def test_launch_rejects_a_bad_announcement_and_stops_the_process(tmp_path: Path) -> None:
    argv = stand_in("""
        import os, time
        print(os.getpid(), "listening", flush=True)
        time.sleep(600)
    """)
    with pytest.raises(FatalError, match="unexpected announcement"):
        sfp.launch(argv, tmp_path, 1, timeout=30)
    pid = int((tmp_path / "serve.out").read_text().split()[0])
    assert gone(pid)


def test_launch_times_out_and_stops_the_process(tmp_path: Path) -> None:
    argv = stand_in("""
        import os, time
        open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
        time.sleep(600)
    """)
    pid_file = tmp_path / "pid"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PID_FILE", str(pid_file))
        with pytest.raises(FatalError, match="no announcement within"):
            sfp.launch(argv, tmp_path, 1, timeout=2)
    assert gone(int(pid_file.read_text()))


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [("t", "t"), (["a", "b"], "a"), ({"x": "a", "admin": "b"}, "b"), ({"x": {"token": "c"}}, "c")],
)
def test_pick_token(tokens: object, expected: str) -> None:
    assert sfp.pick_token(tokens) == expected


def test_pick_token_without_a_token() -> None:
    with pytest.raises(ValueError, match="no token"):
        sfp.pick_token({})


def test_env_file_survives_the_shell(tmp_path: Path) -> None:
    f = tmp_path / "x.env"
    tricky = "postgresql://u:p'w$d@h:1/db?x=1&y=`z`"
    f.write_text(render_env({"A": tricky, "B": None}, header="two\nlines"))
    assert sourced(f, "A", "B") == [tricky, "<unset>"]
    assert read_env(f) == {"A": tricky}
    with pytest.raises(ValueError, match="not a shell variable name"):
        render_env({"A-B": "x"})
