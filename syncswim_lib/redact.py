"""Passwords out of any text that may carry a DSN or URL.

The one path every message that can hold a connection string goes through before it is
raised, logged or printed: drivers echo a malformed DSN back (libpq quotes the token it
could not read, which may be the password itself), so the patterns alone are not enough
and the caller passes the connection strings it holds, whose passwords are removed
wherever they appear.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "passwords_in", "redact"]

MASK = "***"

# scheme://user:password@ — the password runs to the last @ before a space or a quote,
# because an unencoded @ inside it is what makes many DSNs malformed in the first place
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s\"'\[]*:)[^\s\"']*@")
# key=value conninfo: password=secret or password='sec ret'
_KV_PASSWORD = re.compile(r"(?i)(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'\"]+)")
# a query parameter such as ?password=... is covered by the conninfo pattern;
# shorter values than this are removed only where the patterns find them, as a one- or
# two-character password replaced everywhere would leave the message unreadable
_MIN_LITERAL = 3


def passwords_in(source: str) -> tuple[str, ...]:
    """The passwords a DSN or URL holds, as written and %-decoded (found without parsing
    it, because the text may be malformed)."""
    found: list[str] = []
    for match in _URL_PASSWORD.finditer(source):
        written = match.group(0)[len(match.group("head")) : -1]
        found.append(written)
    for match in _KV_PASSWORD.finditer(source):
        value = match.group(0)[len(match.group("head")) :]
        found.append(value)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            found.append(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    out: list[str] = []
    for value in found:
        for form in (value, unquote(value)):
            if form and form not in out:
                out.append(form)
    # the longest first, so a password containing another is removed whole
    return tuple(sorted(out, key=len, reverse=True))


def redact(text: str, *sources: str) -> str:
    """`text` without the passwords of any URL or conninfo in it, nor those of `sources`
    (the connection strings the caller was using) wherever they appear."""
    out = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", out)
    for source in sources:
        for secret in passwords_in(source):
            if len(secret) >= _MIN_LITERAL and secret != MASK:
                out = out.replace(secret, MASK)
    return out
