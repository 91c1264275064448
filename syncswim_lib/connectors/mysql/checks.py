"""The server settings and grants binary-log capture needs (`syncswim doctor`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from syncswim_lib.connectors.checks import Finding

Query = Callable[[str], Sequence[tuple[Any, ...]]]

# (variable, required value): all three change with SET GLOBAL, no restart needed
_REQUIRED = (
    ("binlog_format", "ROW"),
    ("binlog_row_image", "FULL"),
    # column names in the row events: capture maps values to columns by them
    ("binlog_row_metadata", "FULL"),
)
_VARIABLES = (
    "log_bin",
    "server_id",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "binlog_expire_logs_seconds",
    "expire_logs_days",
)
DAY_S = 24 * 3600
_GLOBAL_GRANT = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.IGNORECASE)
# each right and the names that include it (MariaDB 10.5 renamed REPLICATION CLIENT)
_RIGHTS = {
    "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA", "ALL PRIVILEGES"),
    "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER", "ALL PRIVILEGES"),
}


def _global_rights(grants: Sequence[tuple[Any, ...]]) -> set[str]:
    rights: set[str] = set()
    for (line,) in grants:
        found = _GLOBAL_GRANT.match(str(line))
        if found:
            rights |= {r.strip().upper() for r in found.group(1).split(",")}
    return rights


def server_findings(query: Query, endpoint: str) -> list[Finding]:
    out: list[Finding] = []

    def error(problem: str, fix: str) -> None:
        out.append(Finding("error", endpoint, problem, fix))

    names = ", ".join(f"'{v}'" for v in _VARIABLES)
    found = {
        str(k).lower(): str(v)
        for k, v in query(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    }
    if found.get("log_bin", "").upper() != "ON":
        error(
            f"the binary log is off: capture needs log_bin=ON, it is "
            f"{found.get('log_bin', 'not available')}",
            "my.cnf [mysqld]: log_bin = binlog (with server_id set), then restart the server",
        )
    for var, wanted in _REQUIRED:
        have = found.get(var, "").upper()
        if have != wanted:
            error(
                f"capture needs {var}={wanted}, it is {have or 'not available'}",
                f"my.cnf [mysqld]: {var} = {wanted} (to keep it over restarts), and now: "
                f"SET GLOBAL {var} = '{wanted}'; (sessions opened before keep the old value)",
            )
    if found.get("server_id", "1") == "0":  # MySQL 8 allows 0; MariaDB clamps it to 1
        error(
            "server_id is 0: the server does not serve its binary log to readers",
            "my.cnf [mysqld]: server_id = 1 (any id no replica uses), then restart",
        )
    seconds = int(found.get("binlog_expire_logs_seconds", "0") or 0)
    days = float(found.get("expire_logs_days", "0") or 0)
    keep = seconds or int(days * DAY_S)
    if keep == 0:
        out.append(
            Finding(
                "warning",
                endpoint,
                "binary logs are never purged (binlog_expire_logs_seconds = 0): the disk "
                "fills over time",
                "my.cnf [mysqld]: binlog_expire_logs_seconds = 604800 (7 days; longer than "
                "any sync may stay stopped)",
            )
        )
    elif keep < DAY_S:
        out.append(
            Finding(
                "warning",
                endpoint,
                f"binary logs are purged after {keep} s: a sync stopped longer loses its "
                "position and needs a `sync --full`",
                "my.cnf [mysqld]: binlog_expire_logs_seconds = 604800 (7 days)",
            )
        )
    user_rows = query("SELECT CURRENT_USER()")
    user = str(user_rows[0][0]) if user_rows else "?"
    rights = _global_rights(query("SHOW GRANTS FOR CURRENT_USER()"))
    lacking = [r for r, covered in _RIGHTS.items() if not rights.intersection(covered)]
    if lacking:
        name, _, host = user.rpartition("@")
        error(
            f"{user} lacks {' and '.join(lacking)} (reading the binary log needs both)",
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{name}'@'{host}';",
        )
    return out
