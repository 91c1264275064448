"""One state home: the state store follows the declaration, not the working directory, and
a second state store cannot consume a stream that another one owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.pipeline.runtime import Runtime
from syncswim_lib.pipeline.statehome import redact_url, state_url_for
from tests.e2e.harness import TwoDbs

pytestmark = pytest.mark.integration

SYNCSWIM = str(Path(sys.executable).with_name("syncswim"))


def cli(dbs: TwoDbs, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    return subprocess.run(
        [SYNCSWIM, *args],
        env={**env, **dbs.env()},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def declare(dbs: TwoDbs, folder: Path, *, between: str = "[app, shop]") -> Path:
    """The harness's declaration without `state:`, in `folder`: the default applies."""
    folder.mkdir(parents=True, exist_ok=True)
    text = dbs.yaml_path.read_text().replace("state: {env: E2E_STATE_URL}\n", "")
    path = folder / "sync.yaml"
    path.write_text(text.replace("between: [app, shop]", f"between: {between}"))
    return path


def test_sync_in_one_folder_and_audit_in_another_share_the_journal(
    dbs: TwoDbs, tmp_path: Path
) -> None:
    path = declare(dbs, tmp_path / "project")
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    store = tmp_path / "project" / ".syncswim" / "syncswim_state.db"

    assert cli(dbs, here, "setup", str(path)).returncode == 0
    dbs.pg.execute("INSERT INTO customers (id, name) VALUES (7, 'from here')")
    done = cli(dbs, here, "sync", str(path), "--entity", "customers", "-v")
    assert done.returncode == 0, done.stderr
    assert f"state store: sqlite:///{store} (beside the declaration)" in done.stderr

    # a relative path from yet another folder names the same declaration, and its store
    relative = os.path.relpath(path, there)
    audit = cli(
        dbs,
        there,
        "audit",
        relative,
        "--entity",
        "customers",
        "--side",
        "app",
        "--key",
        "id=7",
        "--json",
        "-v",
    )
    assert audit.returncode == 0, audit.stderr
    assert f"state store: sqlite:///{store}" in audit.stderr
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["side"], e["op"], e["status"]) for e in entries] == [("app", "insert", "applied")]
    assert not (here / ".syncswim").exists() and not (there / ".syncswim").exists()


@pytest.mark.parametrize("first", ["app", "shop"])
def test_a_second_state_store_is_refused_on_the_same_stream(
    dbs: TwoDbs, tmp_path: Path, first: str
) -> None:
    """`first`: the endpoint checked first, so each connector's refusal is the one seen."""
    between = "[app, shop]" if first == "app" else "[shop, app]"
    owner = declare(dbs, tmp_path / "owner", between=between)
    stray = declare(dbs, tmp_path / "stray", between=between)
    assert cli(dbs, tmp_path, "setup", str(owner)).returncode == 0
    dbs.pg.execute("INSERT INTO customers (id, name) VALUES (8, 'kept for the owner')")

    for command in (["sync", str(stray)], ["setup", str(stray)]):
        refused = cli(dbs, tmp_path, *command)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        err = refused.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        endpoint = "app" if first == "app" else "shop"
        assert f"on endpoint {endpoint}: its change stream belongs to the state store" in err
        assert str(tmp_path / "owner" / ".syncswim" / "syncswim_state.db") in err
        assert str(tmp_path / "stray" / ".syncswim" / "syncswim_state.db") in err

    # the stray store consumed nothing: the owner still gets the change
    done = cli(dbs, tmp_path, "sync", str(owner), "--entity", "customers")
    assert done.returncode == 0, done.stderr
    assert "shop +1" in done.stdout
    assert [r["name"] for r in dbs.my_rows("customers")] == ["kept for the owner"]

    # teardown by the owner releases the stream: the other store may take it then
    assert cli(dbs, tmp_path, "teardown", str(owner)).returncode == 0
    taken = cli(dbs, tmp_path, "setup", str(stray))
    assert taken.returncode == 0, taken.stderr


def test_a_position_without_a_record_on_the_endpoint_is_refused(
    dbs: TwoDbs, tmp_path: Path
) -> None:
    """The store has a position, the endpoint no record of the capture (torn down): a
    capture must not read on from a stale position; `setup` takes it up again."""
    path = declare(dbs, tmp_path / "p")
    assert cli(dbs, tmp_path, "setup", str(path)).returncode == 0
    with Runtime(load_project(path)) as rt:
        rt.connector("shop").teardown("app_shop")
    refused = cli(dbs, tmp_path, "sync", str(path))
    assert refused.returncode == 1
    assert "the endpoint has no record of this sync's capture" in refused.stderr
    assert cli(dbs, tmp_path, "setup", str(path)).returncode == 0
    assert cli(dbs, tmp_path, "sync", str(path)).returncode == 0


def test_the_state_url_is_absolute_and_shown_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "state: {env: SOME_STATE}\nendpoints:\n  app: {kind: postgres, dsn: x}\n"
        "  shop: {kind: mysql, dsn: y}\nsyncs:\n  s:\n    between: [app, shop]\n"
        "    entities:\n      e:\n        app: {table: t, key: [id]}\n"
        "        shop: {table: t, key: [id]}\n        mode: {external_id: {app: c, shop: c}}\n"
        "        fields: {x: x}\n"
    )
    monkeypatch.chdir("/")
    monkeypatch.setenv("SOME_STATE", "rel/state.db")  # a plain path: the file's folder
    assert state_url_for(load_project(path)) == f"sqlite:///{tmp_path.resolve()}/rel/state.db"
    monkeypatch.delenv("SOME_STATE")
    assert (
        redact_url("postgresql://app:s3cret@db.example:5433/state?schema=x")
        == "postgresql://app:***@db.example:5433/state?schema=x"
    )
    assert redact_url("sqlite:////a/b.db") == "sqlite:////a/b.db"
