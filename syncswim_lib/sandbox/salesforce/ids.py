"""Salesforce record ids: 15-char case-sensitive base-62, 18-char case-safe with a checksum."""

from __future__ import annotations

import re
import threading

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Z0-5]{3})?")
# chars 4-5 are the pod, 6 is reserved: constant here so ids look like a real org's
_POD = "5e0"


# byte -> b"1" for A-Z, b"0" otherwise; then a 5-char chunk's bit string -> its letter
_CASE_BITS = bytes(49 if 65 <= c <= 90 else 48 for c in range(256))
_LETTER = {format(i, "05b")[::-1]: _ALPHABET[i] for i in range(32)}


def checksum(id15: str) -> str:
    """The 3-letter suffix: one letter per 5-char chunk, bit j set when char j is upper-case."""
    if len(id15) == 15 and id15.isascii():  # every real id: checked on each REST call
        flags = id15.encode("ascii").translate(_CASE_BITS).decode("ascii")
        return _LETTER[flags[:5]] + _LETTER[flags[5:10]] + _LETTER[flags[10:]]
    out = []
    for chunk in range(3):
        bits = 0
        for j, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << j
        out.append(_ALPHABET[bits])
    return "".join(out)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def normalize(value: str) -> str | None:
    """Return the 18-char form of a 15- or 18-char id, None when the value is not an id.

    The first 15 chars are case-sensitive and decide identity; an 18-char value whose
    suffix disagrees with them is still accepted the way Salesforce does (the suffix
    only repairs case), so we recompute it.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return None
    if len(value) == 18 and value[15:].upper() != checksum(value[:15]):
        return None
    return to18(value[:15])


def prefix(record_id: str) -> str:
    return record_id[:3]


def base62(n: int, width: int) -> str:
    chars = []
    while n:
        n, r = divmod(n, 62)
        chars.append(_BASE62[r])
    s = "".join(reversed(chars)) or "0"
    if len(s) > width:
        raise OverflowError("id sequence exhausted")
    return s.rjust(width, "0")


def decode_seq(record_id: str) -> int:
    n = 0
    for ch in record_id[6:15]:
        n = n * 62 + _BASE62.index(ch)
    return n


class IdGenerator:
    """One increasing sequence for the whole org, so ids never collide across prefixes."""

    def __init__(self, start: int = 0) -> None:
        self._seq = start
        self._lock = threading.Lock()

    @property
    def last(self) -> int:
        return self._seq

    def bump_to(self, seq: int) -> None:
        with self._lock:
            self._seq = max(self._seq, seq)

    def next(self, key_prefix: str) -> str:
        with self._lock:
            self._seq += 1
            seq = self._seq
        return to18(key_prefix + _POD + base62(seq, 9))
