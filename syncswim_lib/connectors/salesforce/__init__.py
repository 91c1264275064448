"""The Salesforce connector: simple-salesforce (REST, Bulk API 2.0) and Change Data
Capture over CometD. The connector is `connector.SalesforceConnector`; this package
imports nothing itself, so the config loader can read `settings` without pulling in the
client libraries."""
