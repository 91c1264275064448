"""Valid declarations load into the expected immutable models; secrets never show."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from syncswim_lib.config import (
    ConflictRule,
    Conflicts,
    FieldMap,
    FrozenDict,
    Mode,
    Project,
    Secret,
    SideSpec,
    Sync,
    Transform,
    load_project,
    parse_project,
)
from syncswim_lib.config.models import Reference, StreamingSettings
from syncswim_lib.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


def load_project_text(text: str) -> Project:
    return parse_project(text, "inline.yaml")


@pytest.fixture
def project_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder holding the fixtures and `my_rules.py`, the custom rule they name."""
    for name in ("full_sor.yaml", "full_external_id.yaml"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    (tmp_path / "my_rules.py").write_text(
        "def concat(a, b, base, time_a, time_b):\n    return a + b\n"
    )
    yield tmp_path
    sys.modules.pop("my_rules", None)


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APP_DB_DSN", "SHOP_DB_DSN", "SF_URL", "SF_TOKEN", "SF_CA"):
        monkeypatch.delenv(name, raising=False)


def test_full_sor_example(project_dir: Path, no_secrets: None) -> None:
    project = load_project(project_dir / "full_sor.yaml")
    assert project.version == 1
    assert project.state == "sqlite:///var/syncswim/state.db"
    assert project.source_path == project_dir / "full_sor.yaml"
    assert list(project.endpoints) == ["app_db", "shop_db", "crm"]
    crm = project.endpoints["crm"]
    assert crm.kind == "salesforce"
    assert crm.settings == {
        "instance_url": Secret(env="SF_URL"),
        "token": Secret(env="SF_TOKEN"),
        "ca_bundle": Secret(env="SF_CA"),
    }
    sync = project.syncs["app_shop"]
    assert (sync.name, sync.a, sync.b, sync.run, sync.batch_size) == (
        "app_shop",
        "app_db",
        "shop_db",
        "micro_batch",
        1000,
    )
    assert list(sync.entities) == ["customers", "orders"]
    customers = sync.entities["customers"]
    assert customers.sync == "app_shop"
    assert customers.side_a == SideSpec("app_db", "public.customers", ("id",), "postgres")
    assert customers.side_b == SideSpec("shop_db", "customers", ("id",), "mysql")
    assert customers.mode == Mode("system_of_record", "a", None, "app_customer_id")
    strip = Transform(("strip",), ())
    assert customers.fields == (
        FieldMap("email", "email"),
        FieldMap("full_name", "name", to_a=strip, to_b=strip),
        FieldMap("credit_limit", "credit_limit"),
        FieldMap("notes", "notes"),
    )
    assert customers.references == {}
    assert customers.clock == {"b": "updated_at"}
    conflicts = customers.conflicts
    assert conflicts.declared
    assert conflicts.default == ConflictRule("newest")
    assert conflicts.rule_for("credit_limit") == ConflictRule("prefer", prefer="a")
    notes = conflicts.rule_for("notes")
    assert (notes.kind, notes.rule, notes.label) == (
        "rule",
        "my_rules:concat",
        "rule:my_rules:concat",
    )
    assert notes.func is not None and notes.func("a", "b", None, None, None) == "ab"
    assert conflicts.rule_for("email") == ConflictRule("newest")
    # SOR mode: ties go to the system of record; an update beats a delete
    assert (conflicts.tie_break, conflicts.on_delete, conflicts.owns_all) == ("a", "keep", False)
    orders = sync.entities["orders"]
    assert orders.references == {
        "customer_id": Reference("customer_id", "customers", on_delete="refuse")
    }
    assert orders.clock == {}
    total = orders.field("total")
    assert total is not None and total.to_a is not None and total.to_b is None
    assert total.to_a("12.50") == Decimal("12.50")
    # `owns: all` and only on_delete declared: the rest are SOR mode's defaults
    assert orders.conflicts == Conflicts(
        ConflictRule("prefer", prefer="a"),
        FrozenDict(),
        tie_break="a",
        on_delete="delete",
        owns_all=True,
    )


def test_full_external_id_example(project_dir: Path, no_secrets: None) -> None:
    project = load_project(project_dir / "full_external_id.yaml")
    assert project.state is None
    sync = project.syncs["app_crm"]
    assert sync.run == "streaming"  # both endpoints have a continuous reader
    assert sync.batch_size is None
    customers = sync.entities["customers"]
    assert customers.side_b == SideSpec("crm", "Account", ("Id",), "salesforce")
    assert customers.side_b.object == "Account"
    assert customers.mode == Mode("external_id", None, "customer_code", "Customer_Code__c")
    conflicts = customers.conflicts
    assert conflicts.default == ConflictRule("newest")
    assert conflicts.rule_for("credit_limit") == ConflictRule("prefer", prefer="a")
    assert conflicts.rule_for("full_name") == ConflictRule("non_null")
    # the shared external-id column is merged like a field and can have its own rule
    assert conflicts.rule_for("customer_code") == ConflictRule("manual")
    assert (conflicts.tie_break, conflicts.on_delete, conflicts.owns_all) == ("b", "keep", False)
    email = customers.field("email")
    assert email is not None and email.to_b is not None and email.to_a is None
    assert email.to_b.name == "strip | lower"
    assert email.to_b("  Ann@Example.COM ") == "ann@example.com"
    contacts = sync.entities["contacts"]
    assert contacts.mode == Mode("system_of_record", "a", None, "App_Id__c")
    assert contacts.columns("crm") == ("FirstName", "LastName", "AccountId")
    # conflicts left out: the mode's defaults, ties to the system of record
    assert contacts.conflicts == Conflicts(
        ConflictRule("prefer", prefer="a"), FrozenDict(), declared=False, tie_break="a"
    )
    # the short form: on_delete propagate; the parent is declared after its child
    assert contacts.references == {"customer_id": Reference("customer_id", "customers")}
    assert list(sync.entities) == ["contacts", "customers"]
    assert sync.apply_order() == ("customers", "contacts")
    assert project.endpoints["crm"].resolve_setting("api_version") == "59.0"


def test_entity_side_helpers(project_dir: Path) -> None:
    entity = load_project(project_dir / "full_sor.yaml").syncs["app_shop"].entities["customers"]
    assert entity.side("shop_db") is entity.side_b
    assert entity.side("a") is entity.side_a
    assert entity.other("app_db") is entity.side_b
    assert entity.letter("shop_db") == "b"
    assert entity.sor_side is entity.side_a
    assert entity.mode.ext_column("b") == "app_customer_id"
    with pytest.raises(KeyError, match="crm"):
        entity.side("crm")


def test_models_are_immutable_and_picklable(project_dir: Path) -> None:
    project = load_project(project_dir / "full_external_id.yaml")
    sync = project.syncs["app_crm"]
    with pytest.raises(TypeError, match="cannot change"):
        project.syncs["other"] = sync
    with pytest.raises(TypeError, match="cannot change"):
        sync.entities.pop("customers")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sync.run = "micro_batch"  # type: ignore[misc]
    assert isinstance(sync.entities, FrozenDict) and isinstance(sync.entities, dict)
    copy = pickle.loads(pickle.dumps(project.endpoints))
    assert copy == project.endpoints and isinstance(copy, FrozenDict)


def test_run_defaults_to_streaming_between_two_databases() -> None:
    text = (FIXTURES / "full_sor.yaml").read_text()
    text = text.replace("    run: micro_batch\n", "").replace(
        'notes: {rule: "my_rules:concat"}', "notes: newest"
    )
    sync = load_project_text(text).syncs["app_shop"]
    assert sync.run == "streaming"
    assert sync.streaming == StreamingSettings(1000, 20, 3600, 100)  # the documented defaults


def test_streaming_settings_are_read() -> None:
    text = (FIXTURES / "full_sor.yaml").read_text()
    text = text.replace(
        "    run: micro_batch\n",
        "    run: streaming\n"
        "    streaming: {batch_changes: 50, idle_gap_ms: 0, rotate_every_s: 600, "
        "max_batch_ms: 30}\n",
    ).replace('notes: {rule: "my_rules:concat"}', "notes: newest")
    got = load_project_text(text).syncs["app_shop"].streaming
    assert got == StreamingSettings(50, 0, 600, 30)


SECRET_DSN = "postgresql://app:hunter2-secret@db.internal/app"


def test_secrets_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DB_DSN", "mysql://shop:s3cr3t-value@db/shop")
    text = (FIXTURES / "full_sor.yaml").read_text()
    text = text.replace("dsn: {env: APP_DB_DSN}", f"dsn: '{SECRET_DSN}'")
    text = text.replace('notes: {rule: "my_rules:concat"}', "notes: newest")
    text = text.replace(
        "state: sqlite:///var/syncswim/state.db", "state: postgresql://st:pw-state-9@h/state"
    )
    project = load_project_text(text)
    app = project.endpoints["app_db"]
    shop = project.endpoints["shop_db"]
    assert app.resolve_setting("dsn") == SECRET_DSN
    assert shop.resolve_setting("dsn") == "mysql://shop:s3cr3t-value@db/shop"
    assert project.resolve_state() == "postgresql://st:pw-state-9@h/state"
    shown = repr(project) + str(project) + repr(app.settings) + str(shop.settings["dsn"])
    for secret in ("hunter2", "s3cr3t", "pw-state-9"):
        assert secret not in shown
    assert "Secret(<literal>)" in repr(app) and "Secret(env='SHOP_DB_DSN')" in repr(shop)


def test_loading_needs_no_environment_but_resolving_does(
    project_dir: Path, no_secrets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load_project(project_dir / "full_sor.yaml")
    with pytest.raises(ConfigError) as caught:
        project.endpoints["app_db"].resolve_setting("dsn")
    err = caught.value
    assert err.path == "endpoints.app_db.dsn"
    assert err.file == str(project_dir / "full_sor.yaml")
    assert "environment variable APP_DB_DSN is not set" in str(err)
    monkeypatch.setenv("APP_DB_DSN", "  ")
    with pytest.raises(ConfigError, match="APP_DB_DSN is set but empty"):
        project.endpoints["app_db"].resolve_setting("dsn")
    with pytest.raises(ConfigError, match="has no setting 'password'"):
        project.endpoints["app_db"].resolve_setting("password")


def test_secret_resolve_names_the_path_given() -> None:
    name = f"SYNCSWIM_TEST_{uuid.uuid4().hex[:8].upper()}"
    with pytest.raises(ConfigError) as caught:
        Secret(env=name).resolve("endpoints.x.token")
    assert str(caught.value) == (f"endpoints.x.token: environment variable {name} is not set")
    with pytest.raises(ValueError, match="exactly one"):
        Secret()


def test_python_transform_next_to_the_yaml(tmp_path: Path) -> None:
    module = f"cleaning_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def initials(v):\n    return v[:1]\n")
    text = (FIXTURES / "full_sor.yaml").read_text()
    text = text.replace('notes: {rule: "my_rules:concat"}', "notes: newest")
    text = text.replace(
        "{shop_db: strip, app_db: strip}", f"{{shop_db: 'python: {module}:initials'}}"
    )
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    try:
        entity = load_project(path).syncs["app_shop"].entities["customers"]
        to_b = entity.fields[1].to_b
        assert to_b is not None and to_b.steps == (f"python: {module}:initials",)
        assert to_b("Ann") == "A"
        assert str(tmp_path) not in sys.path  # the folder was only searched while loading
    finally:
        sys.modules.pop(module, None)


def test_state_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (FIXTURES / "full_external_id.yaml").read_text()
    project = load_project_text("state: {env: SYNCSWIM_TEST_STATE}\n" + text)
    assert project.state == Secret(env="SYNCSWIM_TEST_STATE")
    monkeypatch.delenv("SYNCSWIM_TEST_STATE", raising=False)
    with pytest.raises(ConfigError, match="state: environment variable SYNCSWIM_TEST_STATE"):
        project.resolve_state()
    monkeypatch.setenv("SYNCSWIM_TEST_STATE", "sqlite:///x.db")
    assert project.resolve_state() == "sqlite:///x.db"
    names = [(e.sync, e.name) for e in project.entities()]
    assert names == [("app_crm", "contacts"), ("app_crm", "customers")]
    contacts = project.syncs["app_crm"].entities["contacts"]
    assert project.endpoint_of(contacts, "b").kind == "salesforce"


def test_build_from_plain_python_values() -> None:
    """Declarations made in code (not read from YAML) go through the same checks."""
    from syncswim_lib.config.build import build_project

    tree = {
        "endpoints": {
            "app_db": {"kind": "postgres", "dsn": {"env": "APP_DB_DSN"}},
            "shop_db": {"kind": "mysql", "dsn": {"env": "SHOP_DB_DSN"}},
        },
        "syncs": {
            "s": {
                "between": ["app_db", "shop_db"],
                "entities": {
                    "c": {
                        "app_db": {"table": "c", "key": "id"},
                        "shop_db": {"table": "c", "key": "id"},
                        "mode": {"external_id": {"app_db": "code", "shop_db": "code"}},
                        "fields": {"name": "name"},
                    }
                },
            }
        },
    }
    project = build_project(tree, "<code>", None)
    assert project.syncs["s"].entities["c"].fields == (FieldMap("name", "name"),)
    tree["syncs"]["s"]["entities"]["c"]["fields"] = {"name": "code"}  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        build_project(tree, "<code>", None)
    assert str(caught.value) == (
        "<code>: syncs.s.entities.c.fields.name: 'code' is the external-id column of shop_db: "
        "keys and external ids are matched through the mode and written by the sync, they "
        "cannot be mapped as fields"
    )


RELATIONS = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: APP_DB_DSN}}
  shop_db: {kind: mysql, dsn: {env: SHOP_DB_DSN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
"""


def entity(name: str, columns: tuple[str, ...] = (), references: str = "") -> str:
    """An external-id entity block whose `columns` (and `label`) have the same name on both
    sides."""
    mapped = ", ".join(f"{c}: {c}" for c in (*columns, "label"))
    block = (
        f"      {name}:\n"
        f"        app_db:  {{table: {name}, key: [id]}}\n"
        f"        shop_db: {{table: {name}, key: [id]}}\n"
        f"        mode: {{external_id: {{app_db: code, shop_db: code}}}}\n"
        f"        fields: {{{mapped}}}\n"
    )
    return block + (f"        references: {references}\n" if references else "")


def relations(*entities: str) -> Sync:
    return load_project_text(RELATIONS + "".join(entities)).syncs["app_shop"]


def test_children_declared_before_their_parents() -> None:
    sync = relations(
        entity("order_lines", ("order_id",), "{order_id: orders}"),
        entity("orders", ("customer_id",), "{customer_id: {entity: customers}}"),
        entity("notes"),
        entity("customers"),
    )
    assert sync.apply_order() == ("notes", "customers", "orders", "order_lines")
    assert sync.parents("order_lines") == ("orders",)
    assert sync.children("customers") == ("orders",)
    assert sync.ancestors("order_lines") == ("customers", "orders")
    assert sync.descendants("customers") == ("orders", "order_lines")
    assert sync.descendants("notes") == ()
    assert sync.cycles() == ()
    assert sync.forward_references() == ()
    assert sync.entities["orders"].references["customer_id"].on_delete == "propagate"


def test_a_self_reference() -> None:
    sync = relations(
        entity(
            "employees",
            ("reports_to", "mentor_id"),
            "{reports_to: {entity: employees, on_delete: set_null}, mentor_id: employees}",
        ),
        entity("badges", ("employee_id",), "{employee_id: employees}"),
    )
    employees = sync.entities["employees"]
    assert employees.references == {
        "reports_to": Reference("reports_to", "employees", "set_null"),
        "mentor_id": Reference("mentor_id", "employees", "propagate"),
    }
    assert sync.apply_order() == ("employees", "badges")
    assert sync.parents("employees") == ("employees",)
    assert sync.cycles() == (("employees",),)
    assert sync.forward_references() == (
        ("employees", employees.references["reports_to"]),
        ("employees", employees.references["mentor_id"]),
    )
    assert sync.ancestors("employees") == ()
    assert sync.descendants("employees") == ("badges",)


def test_two_entities_that_refer_to_each_other() -> None:
    sync = relations(
        entity("tickets", ("owner_id",), "{owner_id: agents}"),
        entity("queues"),
        entity(
            "agents", ("current_ticket", "queue_id"), "{current_ticket: tickets, queue_id: queues}"
        ),
    )
    # the cycle keeps its declaration order once its outside parent (queues) is placed
    assert sync.apply_order() == ("queues", "tickets", "agents")
    assert sync.cycles() == (("tickets", "agents"),)
    tickets, agents = sync.entities["tickets"], sync.entities["agents"]
    assert sync.forward_references() == (("tickets", tickets.references["owner_id"]),)
    assert sync.ancestors("tickets") == ("queues", "agents")
    assert sync.descendants("queues") == ("tickets", "agents")
    assert agents.references["current_ticket"].parent == "tickets"


def test_a_max_default_with_a_reference_that_has_its_own_rule() -> None:
    text = entity("customers") + entity("orders", ("customer_id", "total"))
    text += (
        "        conflicts: {default: max, fields: {customer_id: newest}}\n"
        "        references: {customer_id: customers}\n"
    )
    orders = relations(text).entities["orders"]
    assert orders.conflicts.rule_for("total").kind == "max"
    assert orders.conflicts.rule_for("customer_id").kind == "newest"
    assert list(orders.references) == ["customer_id"]
