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
"""
ORDERS = "fields: {customer_id: customer_id, total: total}"


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
        "missing key 'kind' (one of: postgres, mysql, salesforce, sqlite)",
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
    "reserved_endpoint_name_clock": (
        edit("  crm:     {kind: salesforce", "  clock:  {kind: salesforce"),
        "endpoints.clock",
        "endpoint name 'clock' is reserved",
    ),
    "reserved_endpoint_name_references": (
        edit("  crm:     {kind: salesforce", "  references:  {kind: salesforce"),
        "endpoints.references",
        "endpoint name 'references' is reserved",
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
    "conflict_prefer_unknown_side": (
        edit(
            ORDERS,
            ORDERS + "\n        conflicts: {fields: {total: {prefer: crm}}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.fields.total.prefer",
        "endpoint 'crm' is not part of sync app_shop",
    ),
    "conflict_on_unmapped_field": (
        edit(
            ORDERS,
            ORDERS + "\n        conflicts: {fields: {notes: {prefer: app_db}}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.fields.notes",
        "'notes' is not a mapped field (mapped: customer_id, total, order_code)",
    ),
    "conflict_unknown_default": (
        edit(
            ORDERS,
            ORDERS + "\n        conflicts: {default: newset}",
        ),
        "syncs.app_shop.entities.orders.conflicts.default",
        "unknown conflict rule 'newset' (expected newest, max, min, non_null, manual, "
        "{prefer: <endpoint>} or {rule: 'package.module:function'}; did you mean 'newest'?)",
    ),
    "conflict_rule_missing_module": (
        edit(
            ORDERS,
            ORDERS + "\n        conflicts: {fields: {total: {rule: 'my_missing_rules:concat'}}}",
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
        "unknown run mode 'realtime' (expected one of: micro_batch, streaming)",
    ),
    "streaming_with_polled_salesforce": (
        # a Salesforce endpoint streams by Change Data Capture; a polled one cannot
        edit("token: {env: SF_TOKEN}}", "token: {env: SF_TOKEN}, capture: poll}").replace(
            "    between: [app_db, shop_db]", "    between: [app_db, crm]\n    run: streaming"
        ),
        "syncs.app_shop.run",
        "run mode 'streaming' is not supported yet for polled endpoints",
    ),
    "streaming_settings_for_micro_batch": (
        edit("    between:", "    run: micro_batch\n    streaming: {idle_gap_ms: 5}\n    between:"),
        "syncs.app_shop.streaming",
        "streaming settings apply to run: streaming only",
    ),
    "streaming_unknown_setting": (
        edit("    between:", "    streaming: {idle_gap: 5}\n    between:"),
        "syncs.app_shop.streaming.idle_gap",
        "unknown key 'idle_gap' in streaming (expected one of: batch_changes, idle_gap_ms, "
        "max_batch_ms, rotate_every_s, report_every_ms",
    ),
    "streaming_bad_batch": (
        edit("    between:", "    streaming: {batch_changes: 0}\n    between:"),
        "syncs.app_shop.streaming.batch_changes",
        "expected a whole number of at least 1, got the number 0",
    ),
    "streaming_zero_max_batch": (
        edit("    between:", "    streaming: {max_batch_ms: 0}\n    between:"),
        "syncs.app_shop.streaming.max_batch_ms",
        "expected a whole number of at least 1, got the number 0",
    ),
    "streaming_short_rotation": (
        edit("    between:", "    streaming: {rotate_every_s: 10}\n    between:"),
        "syncs.app_shop.streaming.rotate_every_s",
        "expected a whole number of at least 60, got the number 10",
    ),
    "streaming_negative_report_interval": (
        edit("    between:", "    streaming: {report_every_ms: -1}\n    between:"),
        "syncs.app_shop.streaming.report_every_ms",
        "expected a whole number of at least 0, got the number -1",
    ),
    "streaming_not_a_mapping": (
        edit("    between:", "    streaming: fast\n    between:"),
        "syncs.app_shop.streaming",
        "expected a mapping of streaming settings, got the text 'fast'",
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
            ORDERS,
            ORDERS + "\n        conflicts: {default: {prefer: app_db, rule: 'json:dumps'}}",
        ),
        "syncs.app_shop.entities.orders.conflicts.default",
        "expected one of {prefer: ...} or {rule: ...}, got a mapping",
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


def orders_with(key: str, value: str, text: str = BASE) -> str:
    """`text` with one more key in the orders entity (external-id mode)."""
    return edit(ORDERS, f"{ORDERS}\n        {key}: {value}", text)


SOR_MODE = "mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}"


def customers_with(key: str, value: str, mode: str = SOR_MODE, text: str = BASE) -> str:
    """`text` with one more key in the customers entity (SOR mode) and, optionally, its mode."""
    text = edit(SOR_MODE, mode, text)
    return edit(
        "          credit_limit: credit_limit\n",
        f"          credit_limit: credit_limit\n        {key}: {value}\n",
        text,
    )


COMPOSITE_CUSTOMERS = edit(
    "shop_db: {table: customers, key: [id]}", "shop_db: {table: customers, key: [region, id]}"
)
OWNS_ALL = "mode: {system_of_record: app_db, owns: all, external_id: {shop_db: app_customer_id}}"
CONFLICTS = "syncs.app_shop.entities.orders.conflicts"
CLOCK = "syncs.app_shop.entities.customers.clock"
REFS = "syncs.app_shop.entities.orders.references"

CASES.update(
    {
        "rule_needs_its_argument": (
            orders_with("conflicts", "{default: prefer}"),
            f"{CONFLICTS}.default",
            "conflict rule 'prefer' needs an argument: write {prefer: <endpoint>}",
        ),
        "rule_name_needs_its_argument": (
            orders_with("conflicts", "{fields: {total: rule}}"),
            f"{CONFLICTS}.fields.total",
            "conflict rule 'rule' needs an argument: write {rule: 'module:function'}",
        ),
        "rule_not_text_or_mapping": (
            orders_with("conflicts", "{default: 3}"),
            f"{CONFLICTS}.default",
            "expected newest, max, min, non_null, manual, {prefer: <endpoint>} or "
            "{rule: 'package.module:function'}, got the number 3",
        ),
        "rule_unknown_key": (
            orders_with("conflicts", "{default: {prefr: app_db}}"),
            f"{CONFLICTS}.default.prefr",
            "unknown key 'prefr' in a conflict rule (expected one of: prefer, rule; "
            "did you mean 'prefer'?)",
        ),
        "rule_missing_function": (
            orders_with("conflicts", "{fields: {total: {rule: 'json:no_such_rule'}}}"),
            f"{CONFLICTS}.fields.total.rule",
            "conflict rule: module 'json' has no attribute 'no_such_rule'",
        ),
        "rule_not_callable": (
            orders_with("conflicts", "{fields: {total: {rule: 'json:__name__'}}}"),
            f"{CONFLICTS}.fields.total.rule",
            "conflict rule: 'json:__name__' is not callable",
        ),
        "rule_without_function": (
            orders_with("conflicts", "{fields: {total: {rule: 'json'}}}"),
            f"{CONFLICTS}.fields.total.rule",
            "conflict rule: expected 'package.module:function', got 'json'",
        ),
        "rule_with_the_wrong_arguments": (
            orders_with("conflicts", "{fields: {total: {rule: 'operator:add'}}}"),
            f"{CONFLICTS}.fields.total.rule",
            "conflict rule 'operator:add' must accept (value_a, value_b, base, time_a, time_b), "
            "but its signature is (a, b, /)",
        ),
        "conflicts_unknown_key": (
            orders_with("conflicts", "{tiebreak: app_db}"),
            f"{CONFLICTS}.tiebreak",
            "unknown key 'tiebreak' in conflicts (expected one of: default, fields, tie_break, "
            "on_delete; did you mean 'tie_break'?)",
        ),
        "conflicts_not_a_mapping": (
            orders_with("conflicts", "newest"),
            CONFLICTS,
            "expected {default: ..., fields: {...}, tie_break: ..., on_delete: ...}, "
            "got the text 'newest'",
        ),
        "tie_break_not_in_sync": (
            orders_with("conflicts", "{tie_break: crm}"),
            f"{CONFLICTS}.tie_break",
            "endpoint 'crm' is not part of sync app_shop (between: app_db, shop_db)",
        ),
        "tie_break_unknown_endpoint": (
            orders_with("conflicts", "{tie_break: shop}"),
            f"{CONFLICTS}.tie_break",
            "unknown endpoint 'shop' in tie_break (expected app_db or shop_db; "
            "did you mean 'shop_db'?)",
        ),
        "tie_break_not_a_name": (
            orders_with("conflicts", "{tie_break: [app_db]}"),
            f"{CONFLICTS}.tie_break",
            "expected an endpoint name in tie_break, got a list",
        ),
        "on_delete_unknown": (
            orders_with("conflicts", "{on_delete: recreate}"),
            f"{CONFLICTS}.on_delete",
            "unknown on_delete 'recreate' (expected one of: keep, delete)",
        ),
        "on_delete_not_text": (
            orders_with("conflicts", "{on_delete: true}"),
            f"{CONFLICTS}.on_delete",
            "expected on_delete (one of: keep, delete), got true (a yes/no value)",
        ),
        "owns_in_external_id_mode": (
            edit(
                "{external_id: {app_db: order_code, shop_db: order_code}}",
                "{owns: all, external_id: {app_db: order_code, shop_db: order_code}}",
            ),
            "syncs.app_shop.entities.orders.mode.owns",
            "owns is only valid in system-of-record mode (in external-id mode no side owns "
            "the records)",
        ),
        "owns_unknown_value": (
            edit("{system_of_record: app_db,", "{system_of_record: app_db, owns: everything,"),
            "syncs.app_shop.entities.customers.mode.owns",
            "unknown owns value 'everything' (expected one of: conflicts, all)",
        ),
        "owns_all_with_field_rules": (
            customers_with("conflicts", "{fields: {email: newest}}", OWNS_ALL),
            "syncs.app_shop.entities.customers.conflicts.fields",
            "fields has no effect with mode owns: all (the system of record's values always "
            "win; only on_delete applies)",
        ),
        "owns_all_with_default": (
            customers_with("conflicts", "{default: newest}", OWNS_ALL),
            "syncs.app_shop.entities.customers.conflicts.default",
            "default has no effect with mode owns: all",
        ),
        "owns_all_with_tie_break": (
            customers_with("conflicts", "{tie_break: shop_db}", OWNS_ALL),
            "syncs.app_shop.entities.customers.conflicts.tie_break",
            "tie_break has no effect with mode owns: all",
        ),
        "conflict_on_sor_mode_external_id": (
            customers_with("conflicts", "{fields: {app_customer_id: manual}}"),
            "syncs.app_shop.entities.customers.conflicts.fields.app_customer_id",
            "'app_customer_id' is not a mapped field (mapped: email, full_name, credit_limit)",
        ),
        "clock_not_a_mapping": (
            customers_with("clock", "updated_at"),
            CLOCK,
            "expected a mapping of endpoint: column (the row's last-change time), "
            "got the text 'updated_at'",
        ),
        "clock_empty": (
            customers_with("clock", "{}"),
            CLOCK,
            "expected at least one endpoint: column, got an empty mapping",
        ),
        "clock_endpoint_not_in_sync": (
            customers_with("clock", "{crm: LastModifiedDate}"),
            f"{CLOCK}.crm",
            "endpoint 'crm' is not part of sync app_shop",
        ),
        "clock_column_not_text": (
            customers_with("clock", "{shop_db: 12}"),
            f"{CLOCK}.shop_db",
            "expected a column name, got the number 12",
        ),
        "clock_is_a_mapped_field": (
            customers_with("clock", "{shop_db: name}"),
            f"{CLOCK}.shop_db",
            "'name' is a mapped field of shop_db: a clock column is read to order changes, "
            "never synced (leave it out of fields) (line 17)",
        ),
        "clock_is_a_mapped_side_a_field": (
            customers_with("clock", "{app_db: full_name}"),
            f"{CLOCK}.app_db",
            "'full_name' is a mapped field of app_db",
        ),
        "clock_is_the_key": (
            customers_with("clock", "{app_db: id}"),
            f"{CLOCK}.app_db",
            "'id' is the key of app_db, not a change time",
        ),
        "clock_is_the_external_id": (
            customers_with("clock", "{shop_db: app_customer_id}"),
            f"{CLOCK}.shop_db",
            "'app_customer_id' is the external-id column of shop_db, not a change time",
        ),
        "references_not_a_mapping": (
            orders_with("references", "customers"),
            REFS,
            "expected a mapping of side-a column: parent entity (or {entity: ..., on_delete: "
            "...}), got the text 'customers' (line 22)",
        ),
        "references_empty": (
            orders_with("references", "{}"),
            REFS,
            "expected at least one column: entity, got an empty mapping",
        ),
        "reference_column_not_mapped": (
            orders_with("references", "{customerid: customers}"),
            f"{REFS}.customerid",
            "'customerid' is not a mapped field (mapped: customer_id, total; "
            "did you mean 'customer_id'?) (line 22)",
        ),
        "reference_to_unknown_entity": (
            orders_with("references", "{customer_id: customer}"),
            f"{REFS}.customer_id",
            "unknown entity 'customer' (entities of sync app_shop: customers, orders; "
            "did you mean 'customers'?)",
        ),
        "reference_long_form_to_unknown_entity": (
            orders_with("references", "{customer_id: {entity: clients, on_delete: refuse}}"),
            f"{REFS}.customer_id.entity",
            "unknown entity 'clients' (entities of sync app_shop: customers, orders)",
        ),
        "reference_entity_not_text": (
            orders_with("references", "{customer_id: 12}"),
            f"{REFS}.customer_id",
            "expected an entity name or {entity: ..., on_delete: ...}, got the number 12",
        ),
        "reference_long_form_unknown_key": (
            orders_with("references", "{customer_id: {entity: customers, ondelete: refuse}}"),
            f"{REFS}.customer_id.ondelete",
            "unknown key 'ondelete' in a reference (expected one of: entity, on_delete; "
            "did you mean 'on_delete'?)",
        ),
        "reference_long_form_without_entity": (
            orders_with("references", "{customer_id: {on_delete: refuse}}"),
            f"{REFS}.customer_id",
            "missing key 'entity' in a reference",
        ),
        "reference_unknown_on_delete": (
            orders_with("references", "{customer_id: {entity: customers, on_delete: cascade}}"),
            f"{REFS}.customer_id.on_delete",
            "unknown on_delete 'cascade' (expected one of: propagate, set_null, refuse)",
        ),
        "reference_on_a_transformed_field": (
            customers_with("references", "{full_name: orders}"),
            "syncs.app_shop.entities.customers.references.full_name",
            "field 'full_name' has a transform: a reference is translated through the parent's "
            "links; a transform on it is not supported (line 17)",
        ),
        "reference_on_the_key": (
            orders_with("references", "{id: customers}"),
            f"{REFS}.id",
            "'id' is the key of app_db: a reference is a mapped field that holds the parent's key",
        ),
        "reference_on_the_external_id": (
            orders_with("references", "{order_code: customers}"),
            f"{REFS}.order_code",
            "'order_code' is the external-id column of app_db: a reference is a mapped field",
        ),
        "reference_with_a_max_rule": (
            orders_with(
                "conflicts",
                "{fields: {customer_id: max}}\n        references: {customer_id: customers}",
            ),
            f"{CONFLICTS}.fields.customer_id",
            "conflict rule max on reference 'customer_id' (-> customers): it would compare ids "
            "of different customers rows (use newest, non_null, manual, {prefer: ...} or "
            "{rule: ...}) (line 22)",
        ),
        "reference_under_a_min_default": (
            orders_with(
                "conflicts", "{default: min}\n        references: {customer_id: customers}"
            ),
            f"{CONFLICTS}.default",
            "the default rule min applies to reference 'customer_id' (-> customers): it would "
            "compare ids of different customers rows (give customer_id its own rule in "
            "conflicts.fields)",
        ),
        "reference_to_a_composite_key": (
            orders_with("references", "{customer_id: customers}", text=COMPOSITE_CUSTOMERS),
            f"{REFS}.customer_id",
            "customers has the key [region, id] on shop_db: composite keys are not supported "
            "for references yet (line 22)",
        ),
        "reference_to_a_composite_key_declared_later": (
            customers_with(
                "references",
                "{credit_limit: orders}",
                text=edit(
                    "shop_db: {table: orders, key: [id]}",
                    "shop_db: {table: orders, key: [shop, id]}",
                ),
            ),
            "syncs.app_shop.entities.customers.references.credit_limit",
            "orders has the key [shop, id] on shop_db: composite keys are not supported for "
            "references yet (line 17)",
        ),
    }
)


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


def test_every_rule_and_setting_loads(tmp_path: Path) -> None:
    """The valid spellings of each conflicts key, side by side with the error cases."""
    text = orders_with(
        "conflicts",
        "{default: max, fields: {total: min, customer_id: {prefer: shop_db}, order_code: manual}, "
        "tie_break: shop_db, on_delete: delete}",
    )
    text = customers_with(
        "clock",
        "{app_db: changed_at, shop_db: updated_at}\n        conflicts: {on_delete: keep}",
        "mode: {system_of_record: shop_db, owns: conflicts, "
        "external_id: {app_db: shop_customer_id}}",
        text,
    )
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    sync = load_project(path).syncs["app_shop"]
    orders = sync.entities["orders"].conflicts
    assert orders.default.kind == "max"
    assert {k: r.label for k, r in orders.fields.items()} == {
        "total": "min",
        "customer_id": "prefer:b",
        "order_code": "manual",
    }
    assert (orders.tie_break, orders.on_delete, orders.owns_all) == ("b", "delete", False)
    customers = sync.entities["customers"]
    assert customers.clock == {"a": "changed_at", "b": "updated_at"}
    c = customers.conflicts
    # shop_db is the system of record: it wins conflicts and ties by default
    assert (c.default.label, c.tie_break, c.on_delete, c.owns_all) == (
        "prefer:b",
        "b",
        "keep",
        False,
    )
    assert c.rule_for("email").label == "prefer:b"
