"""The demo's small, realistic schema and seed data: the app's PostgreSQL, the shop's
MariaDB and the CRM (the Salesforce emulator)."""

from __future__ import annotations

from typing import Any

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS public.customers (
    id            serial PRIMARY KEY,
    email         text NOT NULL,
    full_name     text NOT NULL,
    credit_limit  numeric(12,2),
    is_active     boolean NOT NULL DEFAULT true,
    signup_date   date,
    last_order_at timestamptz,
    prefs         jsonb
);
CREATE TABLE IF NOT EXISTS public.orders (
    id          serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES public.customers (id) ON DELETE CASCADE,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    total       numeric(10,2) NOT NULL
);
CREATE TABLE IF NOT EXISTS public.products (
    id       serial PRIMARY KEY,
    sku      text UNIQUE,
    name     text NOT NULL,
    price    numeric(10,2),
    in_stock boolean NOT NULL DEFAULT true
);
"""

PG_SEED = """
INSERT INTO public.customers (email, full_name, credit_limit, is_active, signup_date,
                              last_order_at, prefs) VALUES
 ('ada@example.com', 'Ada Lovelace', 5000.00, true, '2024-01-15', '2026-11-01 10:00:00+00',
  '{"newsletter": true}'),
 ('grace@example.com', 'Grace Hopper', 12000.50, true, '2023-06-01', NULL, '{"lang": "en"}'),
 ('jose@example.com', 'José Núñez', NULL, false, '2025-03-20', NULL, NULL);
INSERT INTO public.orders (customer_id, placed_at, total) VALUES
 (1, '2026-11-01 10:00:00+00', 114.40),
 (2, '2026-10-12 16:20:00+00', 89.90);
INSERT INTO public.products (sku, name, price, in_stock) VALUES
 ('SKU-001', 'Kayak paddle', 89.90, true),
 ('SKU-002', 'Dry bag 20 L', 24.50, true);
"""

# The CRM's side of the app: people at a customer and the deals with it, each pointing at
# its customer (Contact.AccountId and Opportunity.AccountId in Salesforce).
PG_CRM_SCHEMA = """
CREATE TABLE IF NOT EXISTS public.contacts (
    id          serial PRIMARY KEY,
    customer_id int REFERENCES public.customers (id) ON DELETE CASCADE,
    first_name  varchar(40),
    last_name   varchar(80) NOT NULL,
    email       varchar(80)
);
CREATE TABLE IF NOT EXISTS public.deals (
    id          serial PRIMARY KEY,
    customer_id int REFERENCES public.customers (id) ON DELETE CASCADE,
    name        varchar(120) NOT NULL,
    stage       text NOT NULL,
    amount      numeric(12,2),
    close_date  date NOT NULL
);
"""

# by email, not by id: seeded on their own when the tables are new to an older demo folder
PG_CRM_SEED = """
INSERT INTO public.contacts (customer_id, first_name, last_name, email)
SELECT id, 'Charles', 'Babbage', 'charles@example.com' FROM public.customers
 WHERE email = 'ada@example.com';
INSERT INTO public.contacts (customer_id, first_name, last_name, email)
SELECT id, 'Jean', 'Sammet', 'jean@example.com' FROM public.customers
 WHERE email = 'grace@example.com';
INSERT INTO public.deals (customer_id, name, stage, amount, close_date)
SELECT id, 'Ten touring kayaks', 'Negotiation/Review', 8400.00, '2027-03-31'
  FROM public.customers WHERE email = 'ada@example.com';
INSERT INTO public.deals (customer_id, name, stage, amount, close_date)
SELECT id, 'Club paddles', 'Prospecting', 1250.50, '2027-05-15'
  FROM public.customers WHERE email = 'grace@example.com';
"""

# What an admin would add in Setup for the sync: an External ID field per object for the
# app's key (the sync upserts on it), and the Account fields the app has and Salesforce
# lacks. Added through the emulator's control plane, which merges fields by name, so a
# second start adds nothing.
SF_CUSTOM_FIELDS: list[dict[str, Any]] = [
    {
        "name": obj,
        "fields": [
            {
                "name": "App_Id__c",
                "type": "string",
                "length": 20,
                "externalId": True,
                "unique": True,
            },
            *extra,
        ],
    }
    for obj, extra in (
        (
            "Account",
            [
                {"name": "Email__c", "type": "email", "length": 255},
                {"name": "Credit_Limit__c", "type": "currency", "precision": 12, "scale": 2},
                {"name": "Active__c", "type": "boolean", "defaultValue": True},
            ],
        ),
        ("Contact", []),
        ("Opportunity", []),
    )
]

MYSQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id              int AUTO_INCREMENT PRIMARY KEY,
    app_customer_id int NULL UNIQUE,
    email           varchar(255) NOT NULL,
    name            varchar(255) NOT NULL,
    credit_limit    decimal(12,2) NULL,
    active          tinyint(1) NOT NULL DEFAULT 1,
    signup_date     date NULL,
    last_order_at   datetime(6) NULL,
    prefs           json NULL
) ENGINE=InnoDB;
-- the shop's orders point at the shop's own customer ids: the sync translates them
CREATE TABLE IF NOT EXISTS orders (
    id           int AUTO_INCREMENT PRIMARY KEY,
    app_order_id int NULL UNIQUE,
    customer_id  int NOT NULL,
    placed_at    datetime(6) NOT NULL,
    total        decimal(10,2) NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS products (
    id       int AUTO_INCREMENT PRIMARY KEY,
    sku      varchar(64) NULL UNIQUE,
    title    varchar(255) NOT NULL,
    price    decimal(10,2) NULL,
    in_stock tinyint(1) NOT NULL DEFAULT 1
) ENGINE=InnoDB;
"""

MYSQL_SEED = """
INSERT INTO customers (app_customer_id, email, name, credit_limit, active, signup_date)
VALUES (NULL, 'linus@example.org', 'Linus T.', 750.00, 1, '2025-09-09');
INSERT INTO orders (customer_id, placed_at, total)
VALUES (LAST_INSERT_ID(), '2026-11-20 09:30:00', 59.00);
INSERT INTO products (sku, title, price, in_stock) VALUES
 ('SKU-002', 'Dry bag 20 L', 24.50, 1),
 ('SKU-003', 'Spray deck', 59.00, 0);
"""

DEMO_YAML = """\
# Sync or Swim demo: the app's PostgreSQL kept in step with the shop's MariaDB and with
# the CRM (the Salesforce emulator). public.customers is in both syncs: a change one sync
# writes into it is a real change for the other, which carries it on.
endpoints:
  app_db:  {kind: postgres, dsn: {env: SYNCSWIM_PG_DSN}}
  shop_db: {kind: mysql,    dsn: {env: SYNCSWIM_MYSQL_DSN}}
  crm:
    kind: salesforce
    instance_url: {env: SF_URL}
    token: {env: SF_TOKEN}
    ca_bundle: {env: SF_CA_BUNDLE}

syncs:
  app_shop:
    between: [app_db, shop_db]
    # one long-lived Dagster run reads both change streams and applies within a second
    # (docs/streaming.md); micro_batch would wait for the sensor's tick and a new run
    run: streaming
    entities:
      customers:
        app_db:  {table: public.customers, key: [id]}
        shop_db: {table: customers, key: [id]}
        # the app owns customer identity; the shop keeps its own ids and stores ours
        mode: {system_of_record: app_db, external_id: {shop_db: app_customer_id}}
        fields:
          email: email
          full_name: name
          credit_limit: credit_limit
          is_active: active
          signup_date: signup_date
          last_order_at: last_order_at
          prefs: prefs
      orders:
        app_db:  {table: public.orders, key: [id]}
        shop_db: {table: orders, key: [id]}
        mode: {system_of_record: app_db, external_id: {shop_db: app_order_id}}
        fields:
          customer_id: customer_id
          placed_at: placed_at
          total: total
        # a customers key on each side, each in its own ids: translated, parents first
        references: {customer_id: customers}
      products:
        app_db:  {table: public.products, key: [id]}
        shop_db: {table: products, key: [id]}
        # both sides carry the SKU; rows without one wait until they get it
        mode: {external_id: {app_db: sku, shop_db: sku}}
        fields:
          name: title
          price: price
          in_stock: in_stock
  app_crm:
    between: [app_db, crm]
    # micro-batch: the capture sensor reads both change streams at its tick and starts a
    # run for what changed (a Salesforce sync can stream too: docs/streaming.md)
    run: micro_batch
    entities:
      customers:
        app_db: {table: public.customers, key: [id]}
        crm:    {object: Account, key: Id}
        # the app owns identity: its key goes into App_Id__c; an Account made in the CRM
        # is created in the app, and the app's new key written back into App_Id__c
        mode: {system_of_record: app_db, external_id: {crm: App_Id__c}}
        fields:
          full_name: Name
          email: Email__c
          credit_limit: Credit_Limit__c
          is_active: Active__c
      contacts:
        app_db: {table: public.contacts, key: [id]}
        crm:    {object: Contact, key: Id}
        mode: {system_of_record: app_db, external_id: {crm: App_Id__c}}
        fields:
          first_name: FirstName
          last_name: LastName
          email: Email
          customer_id: AccountId
        # the foreign key is the Contact's Account lookup: translated, parents first
        references: {customer_id: customers}
      deals:
        app_db: {table: public.deals, key: [id]}
        crm:    {object: Opportunity, key: Id}
        mode: {system_of_record: app_db, external_id: {crm: App_Id__c}}
        fields:
          name: Name
          stage: StageName
          amount: Amount
          close_date: CloseDate
          customer_id: AccountId
        references: {customer_id: customers}
"""
