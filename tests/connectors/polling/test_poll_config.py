"""The declaration of polled sides: what loads, the defaults, and each error with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.config.polling import DeleteDetection, PollCadence, PollSpec, poll_key
from syncswim_lib.errors import ConfigError

BASE = """\
endpoints:
  app: {kind: postgres, dsn: {env: APP_DSN}}
  legacy: {kind: sqlite, path: legacy.db}
syncs:
  s:
    between: [app, legacy]
    entities:
      customers:
        app: {table: public.customers, key: [id]}
        legacy: {table: customers, key: [id]}
        mode: {system_of_record: app, external_id: {legacy: app_id}}
        fields: {name: name}
        poll:
          legacy: {column: updated_at, deleted: {column: deleted_at}}
"""


POLL_BLOCK = (
    "        poll:\n          legacy: {column: updated_at, deleted: {column: deleted_at}}\n"
)


def load(tmp_path: Path, text: str = BASE):  # type: ignore[no-untyped-def]
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    return load_project(path)


def error(tmp_path: Path, old: str, new: str) -> ConfigError:
    assert old in BASE
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, BASE.replace(old, new, 1))
    return caught.value


def test_the_base_loads_with_defaults(tmp_path: Path) -> None:
    project = load(tmp_path)
    legacy = project.endpoints["legacy"]
    assert legacy.polled and not legacy.change_stream
    assert legacy.settings["path"] == str(tmp_path / "legacy.db")  # from the file's folder
    spec = PollSpec("updated_at", DeleteDetection(column="deleted_at"), 5.0, None)
    assert legacy.polls == {poll_key("s", "customers"): spec}
    assert project.syncs["s"].entities["customers"].poll == {"b": spec}
    assert project.syncs["s"].run == "micro_batch" and project.syncs["s"].poll is None
    assert not project.endpoints["app"].polled


def test_the_options(tmp_path: Path) -> None:
    text = BASE.replace(
        "legacy: {column: updated_at, deleted: {column: deleted_at}}",
        "legacy: {column: updated_at, safety_lag: 500ms, deleted: {keyset_every: 10m}, "
        "written_by: last_writer}",
    ).replace(
        "    between: [app, legacy]\n",
        "    between: [app, legacy]\n    poll: {interval: {min: 2s, max: 1h}}\n",
    )
    project = load(tmp_path, text)
    spec = project.syncs["s"].entities["customers"].poll["b"]
    assert spec == PollSpec("updated_at", DeleteDetection(keyset_every_s=600.0), 0.5, "last_writer")
    assert project.syncs["s"].poll == PollCadence(2.0, 3600.0)
    cron = load(tmp_path, text.replace("{interval: {min: 2s, max: 1h}}", "{cron: '0 * * * *'}"))
    assert cron.syncs["s"].poll == PollCadence(cron="0 * * * *")


@pytest.mark.parametrize(
    ("old", "new", "path", "words"),
    [
        (
            POLL_BLOCK,
            "",
            "syncs.s.entities.customers",
            "legacy is polled (kind sqlite): the entity needs poll:",
        ),
        (
            "legacy: {column: updated_at, deleted: {column: deleted_at}}",
            "legacy: {column: updated_at}",
            "syncs.s.entities.customers.poll.legacy",
            "missing key 'deleted'",
        ),
        (
            "deleted: {column: deleted_at}",
            "deleted: {column: deleted_at, keyset_every: 10m}",
            "syncs.s.entities.customers.poll.legacy.deleted",
            "deleted takes one method",
        ),
        (
            "deleted: {column: deleted_at}",
            "deleted: {keyset_every: soon}",
            "syncs.s.entities.customers.poll.legacy.deleted.keyset_every",
            "expected a duration",
        ),
        (
            "legacy: {column: updated_at,",
            "app: {column: updated_at, deleted: none}\n          legacy: {column: updated_at,",
            "syncs.s.entities.customers.poll.app",
            "app has a change stream; to poll it instead, declare capture: poll",
        ),
        (
            "    between: [app, legacy]\n",
            "    between: [app, legacy]\n    poll: {interval: {min: 10s, max: 5s}}\n",
            "syncs.s.poll.interval",
            "max (5 s) must not be below min (10 s)",
        ),
        (
            "    between: [app, legacy]\n",
            "    between: [app, legacy]\n    poll: {cron: '* * *', interval: {min: 1s}}\n",
            "syncs.s.poll",
            "not both",
        ),
        (
            "    between: [app, legacy]\n",
            "    between: [app, legacy]\n    run: streaming\n",
            "syncs.s.run",
            "not supported yet for polled endpoints",
        ),
        (
            "app: {kind: postgres, dsn: {env: APP_DSN}}",
            "app: {kind: postgres, dsn: {env: APP_DSN}, capture: sometimes}",
            "endpoints.app.capture",
            "unknown capture 'sometimes'",
        ),
    ],
)
def test_errors_name_their_key(tmp_path: Path, old: str, new: str, path: str, words: str) -> None:
    err = error(tmp_path, old, new)
    assert err.path == path, str(err)
    assert words in str(err)


def test_a_polled_postgres_endpoint_needs_its_poll_block(tmp_path: Path) -> None:
    text = BASE.replace(
        "app: {kind: postgres, dsn: {env: APP_DSN}}",
        "app: {kind: postgres, dsn: {env: APP_DSN}, capture: poll}",
    )
    with pytest.raises(ConfigError, match=r"app is polled \(capture: poll\)"):
        load(tmp_path, text)
    ok = text.replace(
        "          legacy: {column: updated_at,",
        "          app: {column: updated_at, deleted: {keyset_every: 1h}}\n"
        "          legacy: {column: updated_at,",
    )
    project = load(tmp_path, ok)
    assert project.endpoints["app"].polled
    assert set(project.endpoints["app"].polls) == {"s/public.customers"}
    mysql = load(tmp_path, ok.replace("kind: postgres", "kind: mysql"))
    assert mysql.endpoints["app"].polled and not mysql.endpoints["app"].change_stream


def test_the_polling_doc_example_loads(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "polling.md").read_text()
    (example,) = re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)
    project = load(tmp_path, example)
    assert project.endpoints["legacy"].polled and project.endpoints["vendor"].polled
    assert project.syncs["app_legacy"].poll == PollCadence(2.0, 300.0)
