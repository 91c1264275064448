"""`syncswim conflicts list|show|resolve|restore` over a SQLite state store filled through
the store API (no servers: these cases never connect to the endpoints; deleting a record
for an update-vs-delete conflict does, and is tested against real servers in
tests/e2e/test_merge_core.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncswim_lib.cli import main
from syncswim_lib.envelope import Op, WatermarkPosition
from syncswim_lib.state.base import BatchRecord, ConflictRecord
from syncswim_lib.state.sqlite import SqliteStateStore

SYNCSWIM = Path(sys.executable).parent / "syncswim"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

YAML = """
state: sqlite:///{state}
endpoints:
  app: {{kind: postgres, dsn: {{env: CONFLICTS_TEST_PG_DSN}}}}
  shop: {{kind: mysql, dsn: {{env: CONFLICTS_TEST_MY_DSN}}}}
syncs:
  app_shop:
    between: [app, shop]
    run: micro_batch
    entities:
      customers:
        app: {{table: public.customers, key: [id]}}
        shop: {{table: customers, key: [id]}}
        mode: {{system_of_record: app, external_id: {{shop: app_id}}}}
        fields: {{name: full_name, credit_limit: credit_limit, notes: notes}}
      products:
        app: {{table: public.products, key: [id]}}
        shop: {{table: products, key: [id]}}
        mode: {{external_id: {{app: code, shop: code}}}}
        fields: {{title: title, price: price}}
"""


def _conflict(**changes: Any) -> ConflictRecord:
    c = ConflictRecord(
        sync="app_shop",
        entity="customers",
        key_a={"id": 7},
        key_b={"id": 1007},
        ext_id=None,
        field="name",
        base_a="Ann",
        base_b="Ann",
        value_a="Ann A",
        value_b="Ann B",
        ts_a=T0,
        ts_b=T0 + timedelta(seconds=1),
        rule="newest",
        outcome="b",
        value="Ann B",
        entry_ids=(11, 12),
    )
    return replace(c, **changes)


# what the fixture stores, oldest first; ids are 1.. in this order
STORED = {
    "decided": _conflict(),
    "open": _conflict(
        field="notes", rule="manual", outcome="manual", value=None, status="open", entry_ids=()
    ),
    "product": _conflict(
        entity="products",
        key_a={"id": 3},
        key_b={"id": 503},
        ext_id="P-1",
        field="price",
        base_a=Decimal("1.00"),
        base_b=Decimal("1.00"),
        value_a=Decimal("2.50"),
        value_b=Decimal("3.75"),
        ts_b=T0,
        rule="newest",
        outcome="a",
        value=Decimal("2.50"),
        tie=True,
    ),
    "resolved": _conflict(
        key_a={"id": 8}, status="resolved", outcome="a", value="Ann A", resolved_at=T0
    ),
    "applied": _conflict(key_a={"id": 9}, status="applied", outcome="a", value="Ann A"),
    "computed": _conflict(
        key_a={"id": 10},
        field="credit_limit",
        rule="rule:my_rules:pick",
        outcome="value",
        value=Decimal("100"),
        base_a=1,
        base_b=1,
        value_a=2,
        value_b=3,
    ),
    "b_only": _conflict(key_a=None, key_b={"id": 2000}),
    "undeclared": _conflict(sync="old_sync", entity="accounts"),
    "deleted": _conflict(
        key_a={"id": 11},
        field="__record__",
        rule="on_delete:keep",
        outcome="a",
        value=None,
        value_a={"name": "kept"},
        value_b=None,
        note="updated on app, deleted on shop",
    ),
}
ID = {name: i for i, name in enumerate(STORED, start=1)}


@dataclass
class Project:
    path: Path
    state: Path

    def store(self) -> SqliteStateStore:
        return SqliteStateStore(self.state)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    state = tmp_path / "state.db"
    path = tmp_path / "sync.yaml"
    path.write_text(YAML.format(state=state))
    store = SqliteStateStore(state)
    for c in STORED.values():
        store.record(BatchRecord(c.sync, c.entity, conflicts=[c]))
    assert [c.id for c in store.conflicts()] == sorted(ID.values(), reverse=True)
    store.close()
    yield Project(path, state)


@dataclass
class Out:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Out:
    code = main(list(args))
    captured = capsys.readouterr()
    return Out(code, captured.out, captured.err)


def usage_error(result: Out, message: str) -> None:
    """Exit code 2 and exactly one line on stderr containing `message`."""
    assert result.code == 2, result
    assert result.err.endswith("\n") and result.err.count("\n") == 1, result.err
    assert result.err.startswith("syncswim: error: ")
    assert message in result.err, result.err
    assert result.out == ""


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


# list -----------------------------------------------------------------------------------


def test_list_shows_every_conflict_newest_first(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "conflicts", "list", str(project.path))
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0].split() == [
        "ID", "SYNC.ENTITY", "RECORD", "FIELD", "RULE", "OUTCOME", "STATUS", "CREATED", "(UTC)",
    ]  # fmt: skip
    body = lines[1:]
    assert [int(line.split()[0]) for line in body] == sorted(ID.values(), reverse=True)
    by_id = {int(line.split()[0]): line for line in body}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    decided = by_id[ID["decided"]]
    for cell in ("app_shop.customers", "app id=7 / shop id=1007", "name", "newest", "shop"):
        assert cell in decided
    assert decided.split()[-3:-1] == ["decided", today]
    product = by_id[ID["product"]]
    assert "P-1 (app id=3 / shop id=503)" in product and "newest (tie)" in product
    assert " app " in product  # side a won, shown by its endpoint name
    assert "manual" in by_id[ID["open"]] and " open " in by_id[ID["open"]]
    assert "shop id=2000" in by_id[ID["b_only"]] and "app id=" not in by_id[ID["b_only"]]
    # an entity the declaration no longer has: sides by letter
    assert "old_sync.accounts" in by_id[ID["undeclared"]]
    assert "a id=7 / b id=1007" in by_id[ID["undeclared"]]
    assert "rule:my_rules:pick" in by_id[ID["computed"]] and " value " in by_id[ID["computed"]]
    # columns line up
    starts = {line.index("app_shop.") for line in body if "app_shop." in line}
    assert len(starts) == 1


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--sync", "app_shop", "--entity", "products"), ["product"]),
        (("--sync", "old_sync"), ["undeclared"]),
        (("--entity", "accounts"), ["undeclared"]),
        (("--status", "open"), ["open"]),
        (("--status", "resolved"), ["resolved"]),
        (("--status", "applied"), ["applied"]),
        (("--status", "decided", "--entity", "products"), ["product"]),
        (("--status", "all", "--sync", "old_sync"), ["undeclared"]),
    ],
)
def test_list_filters(
    project: Project, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], names: list[str]
) -> None:
    r = run(capsys, "conflicts", "list", str(project.path), *args)
    assert r.code == 0 and r.err == ""
    assert [int(row[0]) for row in _rows(r.out)[1:]] == [ID[n] for n in names]


def test_list_limit_and_nothing_found(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "conflicts", "list", str(project.path), "--limit", "2")
    assert r.code == 0
    lines = r.out.splitlines()
    assert [int(line.split()[0]) for line in lines[1:3]] == [len(ID), len(ID) - 1]
    assert lines[3:] == ["(the newest 2; --limit N shows more)"]
    exact = run(capsys, "conflicts", "list", str(project.path), "--limit", str(len(ID)))
    assert len(exact.out.splitlines()) == 1 + len(ID)  # all of them: no "more" line
    huge = run(capsys, "conflicts", "list", str(project.path), "--limit", str(10**30))
    assert huge.code == 0 and huge.out == exact.out
    none = run(capsys, "conflicts", "list", str(project.path), "--sync", "nope")
    assert none.code == 0 and none.out == "no conflicts\n"
    none = run(
        capsys, "conflicts", "list", str(project.path), "--entity", "products", "--status", "open"
    )
    assert none.out == "no conflicts\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "bogus"), "--status must be one of open, decided, resolved, applied, all"),
        (("--limit", "0"), "--limit must be a positive whole number, not '0'"),
        (("--limit", "-3"), "--limit must be a positive whole number"),
        (("--limit", "many"), "--limit must be a positive whole number, not 'many'"),
        (("--limit", "2.5"), "--limit must be a positive whole number, not '2.5'"),
    ],
)
def test_list_bad_options(
    project: Project, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    usage_error(run(capsys, "conflicts", "list", str(project.path), *args), message)


# show -----------------------------------------------------------------------------------


def _fields(out: str) -> dict[str, str]:
    lines = out.splitlines()
    fields: dict[str, str] = {}
    for line in lines[1:]:
        label, _, value = line.strip().partition("  ")
        fields[label] = value.strip()
    return fields


def test_show_tells_everything(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "conflicts", "show", str(project.path), str(ID["product"]))
    assert r.code == 0 and r.err == ""
    assert r.out.splitlines()[0] == f"conflict {ID['product']}"
    f = _fields(r.out)
    assert f["sync.entity"] == "app_shop.products"
    assert f["record"] == "P-1 (app id=3 / shop id=503)"
    assert f["key a (app)"] == "id=3" and f["key b (shop)"] == "id=503"
    assert f["ext id"] == "P-1"
    assert f["field"] == "price (side a), price (side b)"
    assert f["status"] == "decided" and f["rule"] == "newest"
    assert f["tie"].startswith("yes")
    assert f["outcome"] == "app (a)"
    assert f["value"] == "2.50"
    assert (f["base a (app)"], f["base b (shop)"]) == ("1.00", "1.00")
    assert (f["value a (app)"], f["value b (shop)"]) == ("2.50", "3.75")
    assert f["committed a (app)"] == f["committed b (shop)"] == "2025-03-01 12:00:00.000000+00:00"
    assert f["entries"] == "11, 12"
    assert f["created"].startswith(datetime.now(UTC).strftime("%Y-%m-%d"))
    assert f["resolved"] == "-" and f["note"] == "-"


def test_show_other_kinds(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    f = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["decided"])).out)
    assert f["field"] == "name (side a), full_name (side b)"
    assert (f["value a (app)"], f["value b (shop)"], f["value"]) == (
        '"Ann A"',
        '"Ann B"',
        '"Ann B"',
    )
    assert f["outcome"] == "shop (b)" and f["tie"] == "no" and f["ext id"] == "-"
    opened = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["open"])).out)
    assert opened["status"] == "open" and opened["rule"] == "manual"
    assert opened["value"] == "- (waiting for a person)"
    assert opened["outcome"] == "manual" and opened["entries"] == "-"
    done = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["resolved"])).out)
    assert done["resolved"] == "2025-03-01 12:00:00.000000+00:00"
    gone = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["undeclared"])).out)
    assert gone["sync.entity"] == "old_sync.accounts (no longer declared)"
    assert gone["key a"] == "id=7" and gone["outcome"] == "b"
    deleted = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["deleted"])).out)
    assert deleted["field"].startswith("__record__ (the whole record")
    assert deleted["value a (app)"] == '{"name": "kept"}' and deleted["value b (shop)"] == "NULL"
    assert deleted["note"] == "updated on app, deleted on shop"
    b_only = _fields(run(capsys, "conflicts", "show", str(project.path), str(ID["b_only"])).out)
    assert b_only["key a (app)"] == "-"


@pytest.mark.parametrize(
    ("conflict_id", "message"),
    [
        ("999", "no conflict 999"),
        ("99999999999999999999999", "no conflict 99999999999999999999999"),
        ("0", "a conflict id must be a positive whole number, not '0'"),
        ("x7", "a conflict id must be a positive whole number, not 'x7'"),
    ],
)
def test_show_unknown_ids(
    project: Project, capsys: pytest.CaptureFixture[str], conflict_id: str, message: str
) -> None:
    usage_error(run(capsys, "conflicts", "show", str(project.path), conflict_id), message)


# resolve and restore ---------------------------------------------------------------------


def _marker(project: Project, conflict_id: int) -> tuple[str, Any]:
    """The one journal entry resolving `conflict_id` added: (side, change)."""
    store = project.store()
    try:
        (entry,) = store.entries()
        assert (entry.sync, entry.status, entry.batch_id, entry.attempts) == (
            "app_shop",
            "pending",
            None,
            0,
        )
        assert store.pending_counts("app_shop") == {entry.entity: 1}  # asks for a run
    finally:
        store.close()
    ch = entry.change
    assert ch.op == Op.UPDATE and ch.after is None and ch.before is None
    assert ch.commit_ts is None and ch.origin is None
    assert isinstance(ch.position, WatermarkPosition)
    prefix, number, token = ch.position.watermark.split(":")
    assert (prefix, int(number), len(token)) == ("conflict", conflict_id, 32)
    assert abs(ch.detected_at - datetime.now(UTC)) < timedelta(minutes=1)
    return entry.side, ch


def _stored(project: Project, name: str) -> ConflictRecord:
    store = project.store()
    try:
        c = store.conflict(ID[name])
    finally:
        store.close()
    assert c is not None
    return c


@pytest.mark.parametrize(
    ("take", "outcome", "value", "whose"),
    [
        ("shop", "b", "Ann B", "shop's value"),
        ("b", "b", "Ann B", "shop's value"),
        ("app", "a", "Ann A", "app's value"),
        ("a", "a", "Ann A", "app's value"),
    ],
)
def test_resolve_by_taking_a_side(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    take: str,
    outcome: str,
    value: str,
    whose: str,
) -> None:
    before = datetime.now(UTC)
    r = run(capsys, "conflicts", "resolve", str(project.path), str(ID["open"]), "--take", take)
    assert r.code == 0 and r.err == ""
    assert r.out == (
        f'conflict {ID["open"]} resolved: notes = "{value}" ({whose}); '
        "the next run of app_shop.customers writes it to both sides\n"
    )
    c = _stored(project, "open")
    assert (c.status, c.outcome, c.value) == ("resolved", outcome, value)
    assert c.resolved_at is not None and c.resolved_at >= before
    assert c.note is not None and whose in c.note
    side, ch = _marker(project, ID["open"])
    assert (side, ch.table, ch.key) == ("app", "public.customers", {"id": 7})


@pytest.mark.parametrize(
    ("text", "value", "shown"),
    [
        ('"Ann C"', "Ann C", '"Ann C"'),
        ("12.50", Decimal("12.50"), "12.50"),
        ("3", 3, "3"),
        ("null", None, "NULL"),
        ('{"a": [1, true]}', {"a": [1, True]}, '{"a": [1, true]}'),
    ],
)
def test_resolve_with_a_value(
    project: Project, capsys: pytest.CaptureFixture[str], text: str, value: Any, shown: str
) -> None:
    r = run(capsys, "conflicts", "resolve", str(project.path), str(ID["decided"]), "--value", text)
    assert r.code == 0 and r.err == ""
    assert f"name = {shown} (a value given)" in r.out
    c = _stored(project, "decided")
    assert (c.status, c.outcome, c.value) == ("resolved", "value", value)
    assert type(c.value) is type(value)
    _marker(project, ID["decided"])


def test_resolve_an_applied_conflict_again(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "conflicts", "resolve", str(project.path), str(ID["applied"]), "--take", "b")
    assert r.code == 0, r
    c = _stored(project, "applied")
    assert (c.status, c.outcome, c.value) == ("resolved", "b", "Ann B")
    assert _marker(project, ID["applied"])[1].key == {"id": 9}


def test_resolve_a_record_known_only_on_side_b(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "conflicts", "resolve", str(project.path), str(ID["b_only"]), "--take", "a")
    assert r.code == 0, r
    side, ch = _marker(project, ID["b_only"])
    assert (side, ch.table, ch.key) == ("shop", "customers", {"id": 2000})


def test_resolve_another_entity(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(capsys, "conflicts", "resolve", str(project.path), str(ID["product"]), "--take", "shop")
    assert r.code == 0, r
    assert _stored(project, "product").value == Decimal("3.75")
    side, ch = _marker(project, ID["product"])
    assert (side, ch.table, ch.key) == ("app", "public.products", {"id": 3})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((str(ID["decided"]),), "give exactly one of --take SIDE or --value JSON"),
        (
            (str(ID["decided"]), "--take", "a", "--value", "1"),
            "give exactly one of --take SIDE or --value JSON",
        ),
        (
            (str(ID["decided"]), "--take", "crm"),
            "unknown side 'crm' of app_shop.customers: use a, b, app or shop",
        ),
        ((str(ID["decided"]), "--take", "A"), "unknown side 'A'"),
        ((str(ID["decided"]), "--value", "{not json"), "--value is not valid JSON"),
        ((str(ID["decided"]), "--value", "'single'"), "--value is not valid JSON"),
        ((str(ID["decided"]), "--value", ""), "--value is not valid JSON"),
        (("999", "--take", "a"), "no conflict 999"),
        (("seven", "--take", "a"), "a conflict id must be a positive whole number"),
        (
            (str(ID["undeclared"]), "--take", "a"),
            "is of old_sync.accounts, which ",
        ),
    ],
)
def test_resolve_bad_arguments_change_nothing(
    project: Project, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    usage_error(run(capsys, "conflicts", "resolve", str(project.path), *args), message)
    store = project.store()
    try:
        assert store.entries() == []
        assert [c.status for c in store.conflicts()] == [c.status for c in STORED.values()][::-1]
    finally:
        store.close()


def test_restore_gives_back_the_losing_value(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(capsys, "conflicts", "restore", str(project.path), str(ID["decided"]))
    assert r.code == 0 and r.err == ""
    assert 'name = "Ann A" (app\'s value)' in r.out
    c = _stored(project, "decided")
    assert (c.status, c.outcome, c.value) == ("resolved", "a", "Ann A")
    assert c.note is not None and "restore" in c.note
    _marker(project, ID["decided"])
    # side a won this one: restoring takes side b
    r = run(capsys, "conflicts", "restore", str(project.path), str(ID["product"]))
    assert r.code == 0, r
    p = _stored(project, "product")
    assert (p.outcome, p.value) == ("b", Decimal("3.75"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("open", "is open, not decided"),
        ("resolved", "is resolved, not decided"),
        ("applied", "is applied, not decided"),
        ("computed", "was decided by rule:my_rules:pick with a value of its own"),
        ("undeclared", "which "),
    ],
)
def test_restore_refuses_what_has_no_loser(
    project: Project, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    usage_error(run(capsys, "conflicts", "restore", str(project.path), str(ID[name])), message)
    assert replace(_stored(project, name), id=None, created_at=None) == STORED[name]


def test_restore_unknown_id(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    usage_error(run(capsys, "conflicts", "restore", str(project.path), "4242"), "no conflict 4242")


# the declaration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("show", "1"),
        ("resolve", "1", "--take", "a"),
        ("restore", "1"),
    ],
)
def test_a_missing_declaration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    missing = tmp_path / "nope.yaml"
    action, *rest = args
    usage_error(run(capsys, "conflicts", action, str(missing), *rest), f"{missing}: file not found")


def test_an_invalid_declaration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints: [\n")
    r = run(capsys, "conflicts", "list", str(bad))
    usage_error(r, str(bad))


# as users run it ----------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYNCSWIM), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_and_usage() -> None:
    top = cli("--help")
    assert top.returncode == 0 and "conflicts" in top.stdout
    out = cli("conflicts", "--help")
    assert out.returncode == 0
    assert all(a in out.stdout for a in ("list", "show", "resolve", "restore"))
    for args in (
        ("conflicts",),
        ("conflicts", "fix"),
        ("conflicts", "show"),
        ("conflicts", "list"),
    ):
        bad = cli(*args)
        assert bad.returncode == 2 and "usage: syncswim conflicts" in bad.stderr, bad
        assert "Traceback" not in bad.stderr


def test_errors_from_the_installed_command(project: Project, tmp_path: Path) -> None:
    for args in (
        ("resolve", str(project.path), "1", "--value", "{"),
        ("resolve", str(project.path), "1", "--take", "nowhere"),
        ("show", str(project.path), "77"),
        ("list", str(tmp_path / "missing.yaml")),
    ):
        out = cli("conflicts", *args)
        assert out.returncode == 2, out
        assert out.stdout == "" and len(out.stderr.splitlines()) == 1, out
        assert "Traceback" not in out.stderr


def test_output_piped_to_head(project: Project) -> None:
    store = project.store()
    try:
        many = [_conflict(key_a={"id": 100_000 + i}, note="x" * 50) for i in range(3000)]
        store.record(BatchRecord("app_shop", "customers", conflicts=many))
    finally:
        store.close()
    for args in (("list", "--limit", "5000"), ("show", "1")):
        p = subprocess.run(
            f"'{SYNCSWIM}' conflicts {args[0]} '{project.path}' {' '.join(args[1:])} | head -n 1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, p
        assert len(p.stdout.splitlines()) == 1
        assert p.stderr == "", p.stderr
    # the whole list, read to the end, is all there
    full = cli("conflicts", "list", str(project.path), "--limit", "5000")
    assert full.returncode == 0 and len(full.stdout.splitlines()) == 1 + len(ID) + 3000


def _pending_markers(store: SqliteStateStore) -> list[Any]:
    return list(store.pending("app_shop", "customers"))


@pytest.mark.parametrize("side", ["app", "a"])
def test_a_whole_record_conflict_confirmed_for_the_update(
    project: Project, capsys: pytest.CaptureFixture[str], side: str
) -> None:
    """Updated on app, deleted on shop, kept (on_delete: keep): taking the updating side
    confirms what the run did; nothing is written, nothing waits for a run."""
    result = run(
        capsys, "conflicts", "resolve", str(project.path), str(ID["deleted"]), "--take", side
    )
    assert result.code == 0, result
    assert "confirmed: the record stays kept" in result.out and "nothing to write" in result.out
    store = project.store()
    try:
        c = store.conflict(ID["deleted"])
        assert c is not None and (c.status, c.outcome) == ("applied", "a")
        assert c.resolved_at is not None and "confirmed" in (c.note or "")
        assert _pending_markers(store) == []
    finally:
        store.close()


def test_a_whole_record_conflict_the_delete_won(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """on_delete: delete: taking the delete confirms; taking the update would have to
    create the record again on both sides, which is refused with the reason."""
    store = project.store()
    try:
        won = replace(STORED["deleted"], rule="on_delete:delete", outcome="b", key_a={"id": 12})
        store.record(BatchRecord("app_shop", "customers", conflicts=[won]))
        new_id = max(c.id or 0 for c in store.conflicts())
    finally:
        store.close()
    refused = run(capsys, "conflicts", "resolve", str(project.path), str(new_id), "--take", "app")
    usage_error(refused, "not supported yet")
    for how in (("restore",), ("resolve", "--take", "shop")):
        verb, *extra = how
        if verb == "restore":
            usage_error(
                run(capsys, "conflicts", verb, str(project.path), str(new_id)), "not supported yet"
            )
            continue
        done = run(capsys, "conflicts", verb, str(project.path), str(new_id), *extra)
        assert done.code == 0 and "stays deleted" in done.out, done
    store = project.store()
    try:
        assert _stored_status(store, new_id) == "applied"
        assert _pending_markers(store) == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--value", '"x"'), "choose it with --take SIDE, not --value"),
        (("--take", "nowhere"), "unknown side 'nowhere'"),
        (("--take", "app", "--value", "1"), "exactly one of --take SIDE or --value JSON"),
    ],
)
def test_a_whole_record_conflict_bad_arguments(
    project: Project, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    result = run(capsys, "conflicts", "resolve", str(project.path), str(ID["deleted"]), *args)
    usage_error(result, message)
    store = project.store()
    try:
        assert _stored_status(store, ID["deleted"]) == "decided"
        assert _pending_markers(store) == []
    finally:
        store.close()


def test_a_whole_record_conflict_applied_already(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run(
        capsys, "conflicts", "resolve", str(project.path), str(ID["deleted"]), "--take", "app"
    )
    assert first.code == 0, first
    again = run(
        capsys, "conflicts", "resolve", str(project.path), str(ID["deleted"]), "--take", "shop"
    )
    usage_error(again, "reached both sides")


def test_a_whole_record_conflict_waiting_for_its_run(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chosen for the delete and not applied yet: another choice waits for that run."""
    store = project.store()
    try:
        chosen = replace(STORED["deleted"], key_a={"id": 13}, status="resolved", outcome="b")
        store.record(BatchRecord("app_shop", "customers", conflicts=[chosen]))
        new_id = max(c.id or 0 for c in store.conflicts())
    finally:
        store.close()
    result = run(capsys, "conflicts", "resolve", str(project.path), str(new_id), "--take", "app")
    usage_error(result, "waits for the next run to apply shop's choice")


def test_choosing_the_delete_reads_the_endpoint(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete is checked against the surviving row: without its endpoint, one line
    on stderr and nothing chosen."""
    args = ("conflicts", "resolve", str(project.path), str(ID["deleted"]), "--take", "shop")
    usage_error(run(capsys, *args), "CONFLICTS_TEST_PG_DSN is not set")
    # nothing listens on port 1
    monkeypatch.setenv("CONFLICTS_TEST_PG_DSN", "postgresql://u:p@127.0.0.1:1/db")
    monkeypatch.setenv("CONFLICTS_TEST_MY_DSN", "mysql://u:p@127.0.0.1:1/db")
    down = run(capsys, *args)
    assert down.code == 1 and down.out == "", down
    assert down.err.count("\n") == 1 and "cannot connect to PostgreSQL" in down.err, down
    store = project.store()
    try:
        assert _stored_status(store, ID["deleted"]) == "decided"
        assert _pending_markers(store) == []
    finally:
        store.close()


def _stored_status(store: SqliteStateStore, conflict_id: int) -> str:
    found = store.conflict(conflict_id)
    assert found is not None
    return found.status
