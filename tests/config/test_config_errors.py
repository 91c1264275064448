"""Every load-time error: the file, the exact key path and the meaningful part of the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncswim_lib.config import load_project
from syncswim_lib.errors import ConfigError

BASE = """\
endpoints:
  app_db:  {kind: postgres, dsn: {env: APP_DB_DSN}}
  shop_db: {kind: mysql, dsn: {env: SHOP_DB_DSN}}
  crm:     {kind: salesforce, instance_url: {env: SF_URL}, token: {env: SF_TOKEN}}
syncs:
  app_shop:
    between: [app_db, shop_db]
    entities:
      customers:
        app_db:  {table: public.customers, key: [id]}
        shop_db: {table: customers, key: [id]}
        mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}
        fields:
          email: email
          full_name: {to: name, transform: {shop_db: strip}}
          credit_limit: credit_limit
      orders:
        app_db:  {table: public.orders, key: [id]}
        shop_db: {table: orders, key: [id]}
        mode: {external_id: {app_db: order_code, shop_db: order_code}}
        fields: {customer_id: customer_id, total: total}
        references: {customer_id: customers}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, f"the test's edit does not apply: {old!r}"
    return text.replace(old, new, 1)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    err = caught.value
    assert err.file == str(path)
    assert str(err).startswith(str(path))  # one line: file, key path, message
    assert "\n" not in str(err)
    return err


def test_base_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(BASE)
    project = load_project(path)
    assert list(project.syncs["app_shop"].entities) == ["customers", "orders"]


CASES = {
    "unknown_top_key": (
        edit("syncs:\n", "sincs: {}\nsyncs:\n"),
        "sincs",
        "unknown key 'sincs' (expected one of: version, state, endpoints, syncs; "
        "did you mean 'syncs'?) (line 5)",
    ),
    "unknown_nested_key": (
        edit("{table: customers, key: [id]}", "{tabel: customers, key: [id]}"),
        "syncs.app_shop.entities.customers.shop_db.tabel",
        "unknown key 'tabel' in a mysql side (expected one of: table, key; did you mean 'table'?)",
    ),
    "salesforce_side_with_table": (
        edit("between: [app_db, shop_db]", "between: [app_db, crm]")
        .replace("shop_db: {table: customers, key: [id]}", "crm: {table: Account, key: Id}", 1)
        .replace("{shop_db: app_customer_id}", "{crm: App_Id__c}")
        .replace("transform: {shop_db: strip}", "transform: {crm: strip}")
        .replace("      orders:" + BASE.split("      orders:")[1], ""),
        "syncs.app_shop.entities.customers.crm.table",
        "unknown key 'table' in a salesforce side (expected one of: object, key)",
    ),
    "unknown_sync_key": (
        edit("    between:", "    run_mode: streaming\n    between:"),
        "syncs.app_shop.run_mode",
        "did you mean 'run'?",
    ),
    "unknown_endpoint_in_between": (
        edit("between: [app_db, shop_db]", "between: [app_db, shopdb]"),
        "syncs.app_shop.between[1]",
        "unknown endpoint 'shopdb' (declared: app_db, shop_db, crm; did you mean 'shop_db'?)",
    ),
    "same_endpoint_twice": (
        edit("between: [app_db, shop_db]", "between: [app_db, app_db]"),
        "syncs.app_shop.between",
        "two different endpoints, got app_db twice",
    ),
    "endpoint_not_in_sync_entity_block": (
        edit(
            "        mode: {system_of_record",
            "        crm: {object: Account, key: Id}\n        mode: {system_of_record",
        ),
        "syncs.app_shop.entities.customers.crm",
        "endpoint 'crm' is not part of sync app_shop (between: app_db, shop_db)",
    ),
    "unknown_kind": (
        edit("{kind: mysql,", "{kind: mssql,"),
        "endpoints.shop_db.kind",
        "unknown endpoint kind 'mssql' (expected one of: postgres, mysql, salesforce",
    ),
    "missing_kind": (
        edit("{kind: mysql, dsn", "{dsn"),
        "endpoints.shop_db",
        "missing key 'kind' (one of: postgres, mysql, salesforce)",
    ),
    "missing_dsn": (
        edit("{kind: mysql, dsn: {env: SHOP_DB_DSN}}", "{kind: mysql}"),
        "endpoints.shop_db",
        "missing key 'dsn' in a mysql endpoint",
    ),
    "bad_env_name": (
        edit("{env: SHOP_DB_DSN}", "{env: SHOP-DB}"),
        "endpoints.shop_db.dsn.env",
        "expected an environment variable name, got 'SHOP-DB'",
    ),
    "reserved_endpoint_name": (
        edit("  crm:     {kind: salesforce", "  fields:  {kind: salesforce"),
        "endpoints.fields",
        "endpoint name 'fields' is reserved",
    ),
    "side_without_key": (
        edit("shop_db: {table: customers, key: [id]}", "shop_db: {table: customers}"),
        "syncs.app_shop.entities.customers.shop_db",
        "missing key 'key' in a mysql side",
    ),
    "entity_without_side": (
        edit("        shop_db: {table: customers, key: [id]}\n", ""),
        "syncs.app_shop.entities.customers",
        "missing key 'shop_db' in entity customers",
    ),
    "entity_without_mode": (
        edit(
            "        mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}\n",
            "",
        ),
        "syncs.app_shop.entities.customers",
        "missing key 'mode' in entity customers",
    ),
    "field_mapped_twice_to_one_column": (
        edit("          credit_limit: credit_limit", "          credit_limit: email"),
        "syncs.app_shop.entities.customers.fields.credit_limit",
        "shop_db column 'email' is already mapped from 'email'",
    ),
    "field_mapped_twice_by_duplicate_key": (
        edit("          credit_limit: credit_limit", "          email: credit_limit"),
        "syncs.app_shop.entities.customers.fields.email",
        "duplicate key 'email' (first given at line 14) (line 16)",
    ),
    "field_onto_key": (
        edit("          email: email", "          email: id"),
        "syncs.app_shop.entities.customers.fields.email",
        "'id' is the key of shop_db",
    ),
    "field_from_key": (
        edit("          email: email", "          id: email"),
        "syncs.app_shop.entities.customers.fields.id",
        "'id' is the key of app_db",
    ),
    "field_onto_external_id": (
        edit("          email: email", "          email: app_customer_id"),
        "syncs.app_shop.entities.customers.fields.email",
        "'app_customer_id' is the external-id column of shop_db",
    ),
    "field_onto_shared_external_id": (
        edit(
            "{customer_id: customer_id, total: total}",
            "{customer_id: customer_id, total: order_code}",
        ),
        "syncs.app_shop.entities.orders.fields.total",
        "'order_code' is the external-id column of shop_db",
    ),
    "mode_sor_not_in_sync": (
        edit("{system_of_record: app_db,", "{system_of_record: crm,"),
        "syncs.app_shop.entities.customers.mode.system_of_record",
        "endpoint 'crm' is not part of sync app_shop",
    ),
    "mode_external_id_not_in_sync": (
        edit("{app_db: order_code, shop_db: order_code}", "{app_db: order_code, crm: Code__c}"),
        "syncs.app_shop.entities.orders.mode.external_id.crm",
        "endpoint 'crm' is not part of sync app_shop",
    ),
    "mode_unknown_endpoint": (
        edit("{system_of_record: app_db,", "{system_of_record: app_bd,"),
        "syncs.app_shop.entities.customers.mode.system_of_record",
        "unknown endpoint 'app_bd' in system_of_record (expected app_db or shop_db; "
        "did you mean 'app_db'?)",
    ),
    "external_id_mode_missing_side": (
        edit("{app_db: order_code, shop_db: order_code}", "{app_db: order_code}"),
        "syncs.app_shop.entities.orders.mode.external_id",
        "external-id mode needs the shared column on both sides: missing key 'shop_db'",
    ),
    "sor_mode_external_id_on_sor_side": (
        edit("external_id: {shop_db: app_customer_id}", "external_id: {app_db: shop_id}"),
        "syncs.app_shop.entities.customers.mode.external_id.app_db",
        "names the column on shop_db that stores app_db's key",
    ),
    "sor_mode_composite_key": (
        edit(
            "app_db:  {table: public.customers, key: [id]}",
            "app_db:  {table: public.customers, key: [region, id]}",
        ),
        "syncs.app_shop.entities.customers.mode.system_of_record",
        "the system of record's key must be one column",
    ),
    "mode_without_external_id": (
        edit(
            "{system_of_record: app_db, external_id: {shop_db: app_customer_id}}",
            "{system_of_record: app_db}",
        ),
        "syncs.app_shop.entities.customers.mode",
        "missing key 'external_id' in mode",
    ),
    "unknown_transform": (
        edit("{shop_db: strip}", "{shop_db: strp}"),
        "syncs.app_shop.entities.customers.fields.full_name.transform.shop_db",
        "unknown transform 'strp' (did you mean 'strip'?",
    ),
    "transform_missing_module": (
        edit("{shop_db: strip}", "{shop_db: 'python: no_such_pkg.cleaning:tidy'}"),
        "syncs.app_shop.entities.customers.fields.full_name.transform.shop_db",
        "module 'no_such_pkg.cleaning' not found",
    ),
    "transform_missing_function": (
        edit("{shop_db: strip}", "{shop_db: 'python: json:no_such_function'}"),
        "syncs.app_shop.entities.customers.fields.full_name.transform.shop_db",
        "module 'json' has no attribute 'no_such_function'",
    ),
    "transform_side_not_in_sync": (
        edit("{shop_db: strip}", "{crm: strip}"),
        "syncs.app_shop.entities.customers.fields.full_name.transform.crm",
        "endpoint 'crm' is not part of sync app_shop",
    ),
    "reference_to_unknown_entity": (
        edit("references: {customer_id: customers}", "references: {customer_id: customer}"),
        "syncs.app_shop.entities.orders.references.customer_id",
        "unknown entity 'customer' in sync app_shop (entities: customers, orders; "
        "did you mean 'customers'?)",
    ),
    "reference_on_unmapped_column": (
        edit("references: {customer_id: customers}", "references: {client_id: customers}"),
        "syncs.app_shop.entities.orders.references.client_id",
        "'client_id' is not a mapped field",
    ),
    "reference_cycle": (
        edit(
            "          credit_limit: credit_limit",
            "          credit_limit: credit_limit\n          last_order: last_order\n"
            "        references: {last_order: orders}",
        ),
        "syncs.app_shop.entities.orders.references",
        "references form a cycle: customers -> orders -> customers",
    ),
    "conflict_prefer_unknown_side": (
        edit(
            "references: {customer_id: customers}",
            "references: {customer_id: customers}\n"
            "        conflicts: {fields: {total: {prefer: crm}}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.fields.total.prefer",
        "endpoint 'crm' is not part of sync app_shop",
    ),
    "conflict_on_unmapped_field": (
        edit(
            "references: {customer_id: customers}",
            "references: {customer_id: customers}\n"
            "        conflicts: {fields: {notes: {prefer: app_db}}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.fields.notes",
        "'notes' is not a mapped field (mapped: customer_id, total)",
    ),
    "conflict_unknown_default": (
        edit(
            "references: {customer_id: customers}",
            "references: {customer_id: customers}\n        conflicts: {default: latest}",
        ),
        "syncs.app_shop.entities.orders.conflicts.default",
        "expected newest, {prefer: <endpoint>} or {rule: 'package.module:function'}, "
        "got the text 'latest'",
    ),
    "conflict_rule_missing_module": (
        edit(
            "references: {customer_id: customers}",
            "references: {customer_id: customers}\n"
            "        conflicts: {fields: {total: {rule: 'my_missing_rules:concat'}}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.fields.total.rule",
        "module 'my_missing_rules' not found",
    ),
    "table_used_twice_in_sync": (
        edit(
            "app_db:  {table: public.orders, key: [id]}",
            "app_db:  {table: public.customers, key: [id]}",
        ),
        "syncs.app_shop.entities.orders.app_db.table",
        "app_db public.customers is already used by entity customers in this sync",
    ),
    "bad_table_name": (
        edit("{table: customers, key: [id]}", "{table: 'my customers', key: [id]}"),
        "syncs.app_shop.entities.customers.shop_db.table",
        "expected a table name like 'customers' or 'public.customers', got 'my customers'",
    ),
    "bad_sync_name": (
        edit("  app_shop:\n", "  App-Shop:\n"),
        "syncs.App-Shop",
        "a sync name must be lowercase letters, digits and underscores",
    ),
    "bad_entity_name": (
        edit("      orders:\n", "      Orders:\n"),
        "syncs.app_shop.entities.Orders",
        "an entity name must be lowercase letters",
    ),
    "bad_run_mode": (
        edit("    between:", "    run: realtime\n    between:"),
        "syncs.app_shop.run",
        "unknown run mode 'realtime' (expected one of: streaming, micro_batch",
    ),
    "bad_batch_size": (
        edit("    between:", "    batch_size: 0\n    between:"),
        "syncs.app_shop.batch_size",
        "expected a whole number of at least 1, got the number 0",
    ),
    "non_text_column_key": (
        edit("          email: email", "          on: email"),
        "syncs.app_shop.entities.customers.fields.True",
        "expected a column name as key, got true (a yes/no value) (quote it)",
    ),
    "field_without_target": (
        edit("          email: email", "          email:"),
        "syncs.app_shop.entities.customers.fields.email",
        "expected a shop_db column name or {to: ..., transform: ...}, got nothing (null)",
    ),
    "unsupported_version": (
        "version: 2\n" + BASE,
        "version",
        "unsupported version 2 (expected 1)",
    ),
    "bad_state_url": (
        "state: mysql://somewhere/db\n" + BASE,
        "state",
        "expected a sqlite:///... or postgresql://... URL",
    ),
    "no_syncs": (
        BASE.split("syncs:")[0] + "syncs: {}\n",
        "syncs",
        "no syncs declared",
    ),
    "sync_without_entities": (
        BASE.split("    entities:")[0] + "    entities: {}\n",
        "syncs.app_shop.entities",
        "a sync needs at least one entity",
    ),
    "duplicate_endpoint": (
        edit("  crm:     {kind: salesforce", "  app_db:  {kind: salesforce"),
        "endpoints.app_db",
        "duplicate key 'app_db' (first given at line 2) (line 4)",
    ),
    "non_text_key": (
        edit("    between:", "    1: x\n    between:"),
        "syncs.app_shop.1",
        "expected a name as key, got the number 1 (quote it if it is a name)",
    ),
    "table_not_text": (
        edit("{table: customers, key: [id]}", "{table: 12, key: [id]}"),
        "syncs.app_shop.entities.customers.shop_db.table",
        "expected a table name, got the number 12",
    ),
    "bad_endpoint_name": (
        edit("  crm:     {kind", "  CRM:     {kind"),
        "endpoints.CRM",
        "an endpoint name must be lowercase letters",
    ),
    "empty_key": (
        edit("{table: customers, key: [id]}", "{table: customers, key: []}"),
        "syncs.app_shop.entities.customers.shop_db.key",
        "expected a column or a list of columns, got a list",
    ),
    "key_column_twice": (
        edit("{table: customers, key: [id]}", "{table: customers, key: [id, id]}"),
        "syncs.app_shop.entities.customers.shop_db.key",
        "a key column is listed twice: id, id",
    ),
    "between_not_a_pair": (
        edit("between: [app_db, shop_db]", "between: app_db"),
        "syncs.app_shop.between",
        "expected a list of two endpoint names, got the text 'app_db'",
    ),
    "sync_name_too_long": (
        edit("  app_shop:\n", "  " + "s" * 41 + ":\n"),
        "syncs." + "s" * 41,
        "a sync name has at most 40 characters",
    ),
    "setting_not_text": (
        edit("dsn: {env: SHOP_DB_DSN}", "dsn: [a, b]"),
        "endpoints.shop_db.dsn",
        "expected text or {env: VARIABLE}, got a list",
    ),
    "setting_env_with_default": (
        edit("dsn: {env: SHOP_DB_DSN}", "dsn: {env: SHOP_DB_DSN, default: x}"),
        "endpoints.shop_db.dsn.default",
        "unknown key 'default' in a setting (expected one of: env)",
    ),
    "transform_not_text": (
        edit("{shop_db: strip}", "{shop_db: 12}"),
        "syncs.app_shop.entities.customers.fields.full_name.transform.shop_db",
        "expected a transform name or a list of them, got the number 12",
    ),
    "field_long_form_unknown_key": (
        edit("{to: name, transform:", "{to: name, transfrom:"),
        "syncs.app_shop.entities.customers.fields.full_name.transfrom",
        "unknown key 'transfrom' in a field (expected one of: to, transform; "
        "did you mean 'transform'?)",
    ),
    "external_id_not_a_mapping": (
        edit("external_id: {shop_db: app_customer_id}", "external_id: app_customer_id"),
        "syncs.app_shop.entities.customers.mode.external_id",
        "expected a mapping of endpoint: column, got the text 'app_customer_id'",
    ),
    "conflict_rule_with_two_kinds": (
        edit(
            "references: {customer_id: customers}",
            "references: {customer_id: customers}\n"
            "        conflicts: {default: {prefer: app_db, rule: 'json:dumps'}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.default",
        "expected newest, {prefer: <endpoint>} or {rule: 'package.module:function'}, got a mapping",
    ),
    "unhashable_key": (
        edit("    between:", "    ? [a, b]\n    : 1\n    between:"),
        "",
        "YAML syntax error at line 7, column 7: found an unhashable key",
    ),
    "map_tag_on_a_list": (
        edit("    entities:\n", "    entities: !!map [a]\n", BASE.split("      customers:")[0]),
        "",
        "YAML syntax error at line 8, column 15: expected a mapping node",
    ),
    "top_level_not_a_mapping": ("- a\n- b\n", "", "expected a mapping with endpoints and syncs"),
    "empty_file": ("", "", "the file is empty"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_load_error(tmp_path: Path, case: str) -> None:
    text, path, fragment = CASES[case]
    err = load_error(tmp_path, text)
    assert (err.path or "") == path
    assert fragment in str(err)


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    err = load_error(tmp_path, edit("{kind: mysql, dsn", "{kind: mysql dsn"))
    assert err.path is None
    assert "YAML syntax error at line 3, column" in str(err)


def test_bad_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, edit("    between:", "   between:"))
    assert "YAML syntax error at line 8, column 5: expected <block end>" in str(err)
    assert "(while parsing a block mapping that starts at line 7)" in str(err)


def test_duplicate_key_inside_a_list_item_path(tmp_path: Path) -> None:
    text = edit("between: [app_db, shop_db]", "between: [app_db, {a: 1, a: 2}]")
    err = load_error(tmp_path, text)
    assert err.path == "syncs.app_shop.between[1].a"
    assert "duplicate key 'a'" in str(err)


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = edit(
        "endpoints:\n",
        "x-side: &side {table: customers, key: [id]}\nendpoints:\n",
    ).replace("shop_db: {table: customers, key: [id]}", "shop_db: {<<: *side, table: customers}")
    err = load_error(tmp_path, text)
    # the anchor is accepted; the top-level helper key is what is refused
    assert err.path == "x-side"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found") as caught:
        load_project("does/not/exist.yaml")
    assert caught.value.file == "does/not/exist.yaml"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file") as caught:
        load_project(tmp_path)  # a folder
    assert caught.value.file == str(tmp_path)
