"""The control plane: a Python API (`Control`) and the same operations over HTTP at /__emu__/.

Test-only: no Salesforce auth, not counted against the API budget, never faulted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .contract import ApiError, CallContext, Request, Response, Router
from .faults import ControlPolicy

if TYPE_CHECKING:
    from .auth import ApiUsage, Auth
    from .cdc import ChangeEventBus
    from .clock import EmulatorClock
    from .org import Org
    from .rest import RestSettings
    from .rest_query import Cursors


class Control:
    def __init__(
        self,
        org: Org,
        auth: Auth,
        bus: ChangeEventBus,
        clock: EmulatorClock,
        usage: ApiUsage,
        policy: ControlPolicy,
        settings: RestSettings,
        on_reset: Callable[[], None],
    ) -> None:
        self.org, self.auth, self.bus, self.clock = org, auth, bus, clock
        self.usage, self.policy, self.settings = usage, policy, settings
        self.cursors: Cursors | None = None
        self._on_reset = on_reset

    def _ctx(self, user: str, origin: str = "") -> CallContext:
        """Control-plane writes are out-of-band (UI, system) unless they name a client."""
        if user not in self.auth.users:
            raise ApiError(404, "NOT_FOUND", f"no such user {user}")
        base = self.auth.context_for_user(user, origin)
        return replace(base, api="rest" if origin else "")

    # --- data ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the org (users and schema back to their start state), faults, logs, events."""
        self._on_reset()

    def seed(
        self,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        user: str = "integration",
        origin: str = "",
        publish: bool = True,
    ) -> list[str]:
        """Create records in one transaction; system fields (CreatedDate, …) may be given."""
        ctx = self._ctx(user, origin)
        with self.org.transaction(ctx, publish=publish):
            return [self.org.create(ctx, sobject, r, allow_system=True) for r in records]

    def human_create(self, sobject: str, fields: Mapping[str, Any], user: str = "human") -> str:
        """An edit "in the UI": a human user's context, no client origin."""
        return self.org.create(self._ctx(user), sobject, fields)

    def human_update(
        self, sobject: str, record_id: str, fields: Mapping[str, Any], user: str = "human"
    ) -> None:
        self.org.update(self._ctx(user), sobject, record_id, fields)

    def human_delete(self, sobject: str, record_id: str, user: str = "human") -> None:
        self.org.delete(self._ctx(user), sobject, record_id)

    def undelete(self, record_id: str, user: str = "human") -> None:
        self.org.undelete(self._ctx(user), record_id)

    def purge(self, record_ids: Sequence[str], user: str = "human") -> int:
        return self.org.purge(self._ctx(user), record_ids)

    def system_touch(self, sobject: str, record_id: str) -> None:
        self.org.system_touch(self._ctx("integration"), sobject, record_id)

    # --- schema -------------------------------------------------------------------------
    def add_objects(self, specs: Sequence[Mapping[str, Any]]) -> list[str]:
        with self.org.lock:
            names = [self.org.schema.add_object(s).name for s in specs]
            self._journal_schema()
        return names

    def add_field(self, sobject: str, spec: Mapping[str, Any]) -> None:
        with self.org.lock:
            self.org.schema.add_field(sobject, spec)
            self._journal_schema()

    def _journal_schema(self) -> None:
        if self.org.journal is not None:
            self.org.journal.append({"k": "schema", "specs": self.org.schema.specs})

    # --- users ------------------------------------------------------------------------
    def create_user(
        self, key: str, first_name: str, last_name: str, human: bool = True
    ) -> dict[str, Any]:
        user = self.auth.create_user(key, first_name, last_name, human=human)
        return {**asdict(user), "token": self.auth.token(key)}

    def users(self) -> list[dict[str, Any]]:
        return [
            {**asdict(u), "token": self.auth.primary.get(u.key)} for u in self.auth.users.values()
        ]

    def revoke(self, user: str | None = None, token: str | None = None) -> int:
        return self.auth.revoke(token=token, user=user)

    def new_token(self, user: str) -> str:
        self._ctx(user)
        return self.auth.issue_token(user)

    # --- clock, usage, settings ---------------------------------------------------------
    def clock_set(self, when: datetime, frozen: bool = False) -> None:
        self.clock.set(when, frozen)

    def clock_advance(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    def set_usage(self, used: int | None = None, limit: int | None = None) -> dict[str, int]:
        self.usage.set(used, limit)
        return {"used": self.usage.used, "limit": self.usage.limit}

    def set_page_size(self, max_page: int) -> None:
        self.settings.max_page = max(1, max_page)

    def set_lookup_errors(self, wrong_type: str | None = None, missing: str | None = None) -> None:
        if wrong_type:
            self.org.lookup_errors.wrong_type = wrong_type
        if missing:
            self.org.lookup_errors.missing = missing

    # --- faults and inspection ----------------------------------------------------------
    def add_fault(self, kind: str, **options: Any) -> int:
        return self.policy.add_fault(kind, **options).id

    def clear_faults(self) -> None:
        self.policy.clear_faults()

    def requests(self, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        return self.policy.requests(path, method)

    def events(self) -> list[dict[str, Any]]:
        return self.bus.all_events()

    def state(self) -> dict[str, Any]:
        return {
            "clock": self.clock.state(),
            "records": self.org.count(),
            "commit_number": self.org.commit_number,
            "usage": {"used": self.usage.used, "limit": self.usage.limit},
            "objects": self.org.object_names(),
            "faults": self.policy.faults(),
            "cdc_enabled": sorted(self.bus.enabled()),
        }


# --- HTTP --------------------------------------------------------------------------------
def _body(req: Request) -> dict[str, Any]:
    try:
        data = req.json() or {}
    except ValueError:
        raise ApiError(400, "JSON_PARSER_ERROR", "control body must be JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "control body must be a JSON object")
    return data


def _ok(payload: Any = None) -> Response:
    return Response.of_json(200, {"ok": True} if payload is None else payload)


def register(router: Router, control: Control) -> None:
    c = control
    E = "/__emu__"

    def add(method: str, path: str, fn: Callable[[dict[str, Any], re.Match[str]], Any]) -> None:
        def handler(req: Request, m: re.Match[str]) -> Response:
            try:
                return _ok(fn(_body(req), m))
            except (TypeError, ValueError, KeyError) as exc:
                raise ApiError(400, "INVALID_CONTROL_REQUEST", str(exc)) from None

        router.add(method, E + path, handler, auth=False)

    add("GET", "/state", lambda b, m: c.state())
    add("POST", "/reset", lambda b, m: c.reset())
    add(
        "POST",
        "/seed",
        lambda b, m: {
            "ids": c.seed(
                b["sobject"], b["records"], b.get("user", "integration"), b.get("origin", "")
            )
        },
    )
    add("POST", "/schema", lambda b, m: {"objects": c.add_objects(b["objects"])})
    add("POST", r"/schema/(?P<sobject>\w+)/fields", lambda b, m: c.add_field(m["sobject"], b))
    add("GET", "/users", lambda b, m: c.users())
    add(
        "POST",
        "/users",
        lambda b, m: c.create_user(
            b["key"],
            b.get("first_name", ""),
            b.get("last_name", b["key"]),
            bool(b.get("human", True)),
        ),
    )
    add("POST", r"/users/(?P<key>\w+)/revoke", lambda b, m: {"revoked": c.revoke(m["key"])})
    add("POST", r"/users/(?P<key>\w+)/token", lambda b, m: {"token": c.new_token(m["key"])})
    add("POST", "/tokens/revoke", lambda b, m: {"revoked": c.revoke(token=b["token"])})
    add("GET", "/clock", lambda b, m: c.clock.state())

    def clock(b: dict[str, Any], _m: re.Match[str]) -> Any:
        if "set" in b:
            c.clock_set(datetime.fromisoformat(b["set"]), bool(b.get("frozen", False)))
        if "advance_seconds" in b:
            c.clock_advance(float(b["advance_seconds"]))
        return c.clock.state()

    add("POST", "/clock", clock)
    add("GET", "/faults", lambda b, m: c.policy.faults())
    add("POST", "/faults", lambda b, m: {"id": c.add_fault(b.pop("kind"), **b)})
    add("DELETE", "/faults", lambda b, m: c.clear_faults())

    def human(b: dict[str, Any], m: re.Match[str]) -> Any:
        op, user = m["op"], b.get("user", "human")
        if op == "create":
            return {"id": c.human_create(b["sobject"], b["fields"], user)}
        if op == "update":
            return c.human_update(b["sobject"], b["id"], b["fields"], user)
        if op == "delete":
            return c.human_delete(b["sobject"], b["id"], user)
        return c.undelete(b["id"], user)

    add("POST", r"/human/(?P<op>create|update|delete|undelete)", human)
    add("POST", "/undelete", lambda b, m: c.undelete(b["id"], b.get("user", "human")))
    add("POST", "/purge", lambda b, m: {"purged": c.purge(b["ids"])})
    add("POST", "/system-touch", lambda b, m: c.system_touch(b["sobject"], b["id"]))
    add("GET", "/requests", lambda b, m: c.requests())
    add("DELETE", "/requests", lambda b, m: c.policy.clear_requests())
    add("GET", "/usage", lambda b, m: c.set_usage())
    add("POST", "/usage", lambda b, m: c.set_usage(b.get("used"), b.get("limit")))
    add("POST", "/settings", lambda b, m: c.set_page_size(int(b["max_page"])))
    add("GET", "/events", lambda b, m: c.events())

    def cdc(b: dict[str, Any], _m: re.Match[str]) -> Any:
        for name in b.get("enable", []):
            c.bus.enable(name)
        for name in b.get("disable", []):
            c.bus.disable(name)
        return sorted(c.bus.enabled())

    add("POST", "/cdc", cdc)
