"""The declaration `syncswim init` writes: a `Scaffold` as YAML text with comments.

Comments say why each choice was made; the ones starting `decide:` are what a person must
settle before the first sync, `lossy:` the ways a mapped field can lose or refuse values.
DSNs are written as `{env: VARIABLE}`, never as text: the password stays in the
environment.
"""

from __future__ import annotations

import json
import re
import textwrap

from syncswim_lib.config.scaffold import LETTERS, EntityPlan, Letter, Scaffold

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# words YAML 1.1 reads as something else than text
_SPECIAL = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
WIDTH = 96


def scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when that reads back as the same text, else quoted."""
    if _PLAIN.fullmatch(text) and text.lower() not in _SPECIAL:
        return text
    return json.dumps(text)  # a JSON string is a double-quoted YAML scalar


def comment(text: str, indent: int, tag: str = "") -> list[str]:
    """`text` as comment lines of at most WIDTH characters."""
    pad = " " * indent
    first = f"{tag}: " if tag else ""
    lines = textwrap.wrap(
        f"{first}{text}",
        WIDTH - indent - 2,
        subsequent_indent="  ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    return [f"{pad}# {line}" for line in lines]


def sql_by_endpoint(scaffold: Scaffold) -> list[tuple[Letter, list[str]]]:
    out: list[tuple[Letter, list[str]]] = []
    for letter in LETTERS:
        statements = [s for lt, s in scaffold.sql() if lt == letter]
        if statements:
            out.append((letter, statements))
    return out


def sql_header(scaffold: Scaffold, letter: Letter) -> str:
    side = scaffold.sides[letter]
    return f"-- on {side.name} ({side.kind} database {side.db.database})"


def _entity(plan: EntityPlan, scaffold: Scaffold) -> list[str]:
    sides = scaffold.sides
    lines = [f"      {plan.name}:"]
    for note in plan.notes:
        lines += comment(note, 8)
    for decision in plan.decisions:
        lines += comment(decision, 8, "decide")
    for letter in LETTERS:
        key = ", ".join(scalar(k) for k in plan.keys[letter])
        lines.append(
            f"        {sides[letter].name}: {{table: {scalar(plan.tables[letter])}, key: [{key}]}}"
        )
    if plan.mode == "system_of_record":
        assert plan.sor is not None
        there: Letter = "b" if plan.sor == "a" else "a"
        lines.append(
            f"        mode: {{system_of_record: {sides[plan.sor].name}, external_id: "
            f"{{{sides[there].name}: {scalar(plan.ext[there])}}}}}"
        )
    else:
        pairs = ", ".join(f"{sides[lt].name}: {scalar(plan.ext[lt])}" for lt in LETTERS)
        lines.append(f"        mode: {{external_id: {{{pairs}}}}}")
    lines.append("        fields:" if plan.fields else "        fields: {}")
    for f in plan.fields:
        for note in f.notes:
            lines += comment(note, 10, "lossy")
        lines.append(f"          {scalar(f.a)}: {scalar(f.b)}")
    for a, b, why in plan.left_out:
        lines += comment(f"{why}; left out", 10, "decide")
        lines.append(f"          # {scalar(a)}: {scalar(b)}")
    for letter in LETTERS:
        columns = plan.only_on.get(letter)
        if columns:
            lines += comment(
                f"columns only on {sides[letter].name}, not synced: {', '.join(columns)}",
                8,
                "decide",
            )
    refs = plan.references
    if refs:
        lines.append("        references:")
        lines += [f"          {scalar(col)}: {parent}" for col, parent in refs.items()]
    if plan.match_on is not None:
        lines.append(
            f"        # match_on: {{fields: [{scalar(plan.match_on)}], normalise: [strip, lower]}}"
        )
    return lines


def render(scaffold: Scaffold) -> str:
    sides = scaffold.sides
    lines = ["# A starting declaration written by `syncswim init` from"]
    for letter in LETTERS:
        side = sides[letter]
        lines.append(f"#   {side.name}: {side.kind} database {side.db.database} ({side.db.label})")
    lines += [
        "# Read every comment marked `decide:` before the first sync. Then:",
        "#   syncswim validate THIS_FILE   (after running the SQL below)",
        "#   syncswim setup THIS_FILE && syncswim sync THIS_FILE --full",
    ]
    for warning in scaffold.warnings:
        lines.append("#")
        lines += comment(warning, 0, "decide")
    blocks = sql_by_endpoint(scaffold)
    if blocks:
        lines += ["#", "# SQL to run first (init printed it too):"]
        for letter, statements in blocks:
            lines.append(f"#   {sql_header(scaffold, letter)}")
            lines += [f"#   {s}" for s in statements]
    for letter in LETTERS:
        if scaffold.only_on[letter]:
            lines.append("#")
            lines += comment(
                f"tables only on {sides[letter].name}, not synced (create them on the other "
                f"side and run init again, or leave them): {', '.join(scaffold.only_on[letter])}",
                0,
                "decide",
            )
    for table, why in scaffold.skipped:
        lines.append("#")
        lines += comment(f"table {table} is not synced: {why}", 0, "decide")
    lines += [
        "",
        "version: 1",
        "",
        "# secrets come from the environment: set these variables to the DSNs",
    ]
    lines.append("endpoints:")
    for letter in LETTERS:
        side = sides[letter]
        lines.append(f"  {side.name}: {{kind: {side.kind}, dsn: {{env: {side.env}}}}}")
    a, b = sides["a"].name, sides["b"].name
    lines += [
        "",
        "syncs:",
        f"  {scaffold.sync}:",
        f"    between: [{a}, {b}]",
        "    # streaming (the default between databases): one long-lived run reads both change",
        "    # streams and applies as changes come; micro_batch: a run per capture sensor tick",
        "    run: streaming",
        "    entities:",
    ]
    for i, plan in enumerate(scaffold.entities):
        if i:
            lines.append("")
        lines += _entity(plan, scaffold)
    return "\n".join(lines) + "\n"
