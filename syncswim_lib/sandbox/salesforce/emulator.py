"""Assemble and start the emulator: clock, CDC bus, org, routes, TLS server, control plane.

from syncswim_lib.sandbox.salesforce.emulator import start_emulator
emu = start_emulator()               # in memory, free port
sf = emu.client()                    # simple_salesforce.Salesforce for the integration user
emu.control.human_update("Account", account_id, {"Name": "edited in the UI"})
emu.stop()
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import auth as auth_mod
from . import bulk, cometd, control, rest
from .auth import ApiUsage, Auth, User
from .cdc import ChangeEventBus
from .clock import EmulatorClock
from .contract import Router
from .control import Control
from .faults import ControlPolicy
from .org import Org
from .persist import Store
from .rest import RestSettings
from .schema import Schema, load_default_specs, load_specs_file
from .server import Dispatcher, EmulatorHTTPServer, serve_in_thread
from .tls import make_certificates, server_context

if TYPE_CHECKING:
    import requests
    from simple_salesforce.api import Salesforce

__all__ = ["Emulator", "start_emulator"]

SchemaSource = str | Path | Sequence[Mapping[str, Any]] | None


def _specs(schema: SchemaSource) -> list[dict[str, Any]]:
    specs = load_default_specs()
    if schema is None:
        return specs
    if isinstance(schema, str | Path):
        return specs + load_specs_file(Path(schema).read_text("utf-8"))
    return specs + [dict(s) for s in schema]


class Emulator:
    """A running emulator. Use as a context manager or call stop()."""

    def __init__(
        self,
        *,
        port: int,
        data_dir: Path | None,
        schema: SchemaSource,
        api_limit: int,
        fsync: bool,
        cdc_retention: timedelta,
    ) -> None:
        self.clock = EmulatorClock()
        self.data_dir = data_dir
        self._base_specs = _specs(schema)
        self._tmp = None if data_dir else Path(tempfile.mkdtemp(prefix="sf-emulator-"))
        tls_dir = (data_dir / "tls") if data_dir else self._tmp
        assert tls_dir is not None
        self.bus = ChangeEventBus(self.clock, data_dir, retention=cdc_retention)
        self.org = Org(self.clock, Schema(self._base_specs), sink=self.bus)
        self.auth = Auth(self.org)
        self.org.authenticate = lambda token: self.auth.context(token)
        self.store = Store(data_dir, fsync=fsync) if data_dir else None
        if self.store is not None:
            self._recover(self.store)
        self.auth.ensure_defaults()
        self._initial = self.auth.dump_state()
        self.usage = ApiUsage(self.clock, api_limit)
        self._api_limit = api_limit
        self.policy = ControlPolicy()
        self.settings = RestSettings(usage=self.usage)
        self.router = Router()
        auth_mod.register(self.router, self.auth)
        api = rest.register(self.router, self.org, self.settings)
        self.control = Control(
            self.org,
            self.auth,
            self.bus,
            self.clock,
            self.usage,
            self.policy,
            self.settings,
            self._reset,
        )
        self._rest = api
        control.register(self.router, self.control)
        bulk.register(self.router, self.org)
        cometd.register(self.router, self.org, self.bus)
        files = make_certificates(tls_dir)
        self.ca_path = files.ca_path
        dispatcher = Dispatcher(self.router, self.auth, self.usage, self.policy)
        self._server = EmulatorHTTPServer(port, dispatcher, server_context(files))
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.auth.base_url = self.url
        self._stop = serve_in_thread(self._server)

    def _recover(self, store: Store) -> None:
        snapshot, entries = store.load()
        if snapshot is not None:
            self.org.load_state(snapshot["org"])
            self.auth.load_state(snapshot["auth"])
        for entry in entries:
            kind = entry["k"]
            if kind == "tx":
                self.org.replay(entry)
            elif kind == "schema":
                self.org.schema.__init__(entry["specs"])  # type: ignore[misc]
            else:
                self.auth.replay(entry)
        for spec in self._base_specs:  # a schema file may have grown since the last run
            self.org.schema.add_object(spec)
        self.org.journal = store
        self.auth.journal = store
        store.checkpoint(self._state())

    def _state(self) -> dict[str, Any]:
        return {"org": self.org.dump_state(), "auth": self.auth.dump_state()}

    def _reset(self) -> None:
        defaults = {k for k, *_ in auth_mod.DEFAULT_USERS}
        with self.org.lock:
            keep = [u["user_id"] for u in self._initial["users"] if u["key"] in defaults]
            self.org.clear_records(keep=keep)
            self.org.schema.__init__(self._base_specs)  # type: ignore[misc]
            self.org.lookup_errors.__init__()  # type: ignore[misc]
            self.auth.users.clear()
            self.auth.tokens.clear()
            self.auth.primary.clear()
            self.auth.load_state(
                {
                    "users": [u for u in self._initial["users"] if u["key"] in defaults],
                    "tokens": {t: k for t, k in self._initial["tokens"].items() if k in defaults},
                    "primary": {k: t for k, t in self._initial["primary"].items() if k in defaults},
                }
            )
            if self.store is not None:
                self.store.checkpoint(self._state())
        self.clock.reset()
        self.usage.set(used=0, limit=self._api_limit)
        self.policy.clear_faults()
        self.policy.clear_requests()
        self.settings.max_page = 2000
        self.bus.reset()

    # --- handle API -------------------------------------------------------------------------
    @property
    def users(self) -> dict[str, User]:
        return dict(self.auth.users)

    def token(self, user: str = "integration") -> str:
        return self.auth.token(user)

    def session(self) -> requests.Session:
        """A requests session that trusts the emulator's CA (and ignores REQUESTS_CA_BUNDLE)."""
        import requests

        s = requests.Session()
        s.verify = str(self.ca_path)
        s.trust_env = False
        return s

    def client(
        self, user: str = "integration", version: str = "62.0", origin: str | None = None
    ) -> Salesforce:
        """An unmodified simple-salesforce client in direct-session mode."""
        from simple_salesforce.api import Salesforce

        sf = Salesforce(
            instance_url=self.url,
            session_id=self.token(user),
            version=version,
            session=self.session(),
        )
        if origin:  # SFType calls don't copy sf.headers; every call goes through the session
            sf.session.headers["Sforce-Call-Options"] = f"client={origin}"
        return sf

    def login_session(self) -> requests.Session:
        """A session whose https requests all reach the emulator (login.salesforce.com, …).

        simple-salesforce hard-codes the login hosts; this keeps the client unmodified.
        """
        from requests.adapters import HTTPAdapter

        url = self.url

        class _ToEmulator(HTTPAdapter):
            def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                path = request.url.split("://", 1)[1].split("/", 1)[1]
                request.url = f"{url}/{path}"
                return super().send(request, *args, **kwargs)

        s = self.session()
        s.mount("https://", _ToEmulator())
        return s

    def stop(self) -> None:
        self._stop()
        if self.store is not None:
            self.store.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    port: int = 0,
    data_dir: str | Path | None = None,
    schema: SchemaSource = None,
    api_limit: int = 15000,
    fsync: bool = True,
    cdc_retention: timedelta = timedelta(hours=72),
) -> Emulator:
    """Start an emulator on 127.0.0.1 (port 0 = a free port); returns once it accepts calls."""
    return Emulator(
        port=port,
        data_dir=Path(data_dir) if data_dir else None,
        schema=schema,
        api_limit=api_limit,
        fsync=fsync,
        cdc_retention=cdc_retention,
    )
