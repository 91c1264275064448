"""The demo's CRM: the Salesforce emulator the sandbox started, given the fields the sync
needs, and a person's edit in it as a ready-to-paste command."""

from __future__ import annotations

import json
import shlex
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from syncswim_lib.errors import FatalError
from syncswim_lib.sandbox.demo_schema import SF_CUSTOM_FIELDS
from syncswim_lib.sandbox.salesforce_process import EmulatorProcess

API_VERSION = "62.0"
HUMAN = "human"  # the emulator's "Harriet Human": edits made by a person, not by a client
CONTROL_TIMEOUT = 30.0


def _control(emu: EmulatorProcess, method: str, path: str, body: Any = None) -> Any:
    """A call to the emulator's control plane (`/__emu__/...`, no Salesforce auth): it is
    the demo's stand-in for an admin in Setup, which the REST API does not offer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{emu.url}/__emu__{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    ctx = ssl.create_default_context(cafile=emu.ca_path)
    try:
        with urllib.request.urlopen(req, timeout=CONTROL_TIMEOUT, context=ctx) as resp:
            return json.loads(resp.read() or b"null")
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise FatalError(f"the Salesforce emulator refused {method} /__emu__{path}: {e}") from e


def prepare_org(emu: EmulatorProcess) -> str:
    """Add the demo's custom fields (merged by name: a restart adds nothing) and return the
    human user's token, for the banner's edit."""
    _control(emu, "POST", "/schema", {"objects": SF_CUSTOM_FIELDS})
    users = _control(emu, "GET", "/users")
    tokens = [u.get("token") for u in users if isinstance(u, dict) and u.get("key") == HUMAN]
    if not tokens or not isinstance(tokens[0], str):
        raise FatalError(f"the Salesforce emulator has no session for its {HUMAN!r} user")
    return tokens[0]


def human_edit_command(env_file: Path, app_id: int, fields: dict[str, Any]) -> str:
    """A person's edit of the Account whose App_Id__c is `app_id`, as a shell command.

    It goes through the REST API with the human user's token and no `Sforce-Call-Options`,
    so the change event carries no client origin: to the sync it is what an edit in the
    Salesforce UI is. Addressed by the external id (an upsert that finds the record) so
    the command needs no Salesforce Id; the variables come from the demo's env file."""
    url = f"$SF_URL/services/data/v{API_VERSION}/sobjects/Account/App_Id__c/{app_id}"
    return (
        f". {shlex.quote(str(env_file))} && curl -sS --fail-with-body -X PATCH"
        ' --cacert "$SF_CA_BUNDLE" \\\n'
        '      -H "Authorization: Bearer $SF_HUMAN_TOKEN" -H "Content-Type: application/json"'
        f' \\\n      "{url}" -d {shlex.quote(json.dumps(fields))}'
    )
