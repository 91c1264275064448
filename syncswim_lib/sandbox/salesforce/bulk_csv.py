"""CSV reading and writing for the emulator's Bulk API 2.0 (pure functions, no org access)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Bulk API 2.0 `columnDelimiter` / `lineEnding` enum values and the characters they stand for.
DELIMITERS: Mapping[str, str] = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
LINE_ENDINGS: Mapping[str, str] = {"LF": "\n", "CRLF": "\r\n"}

# Ingest CSV convention: an empty cell leaves the field alone, `#N/A` sets it to null.
NULL_MARKER = "#N/A"

# REST/SOQL JSON renders dateTime as `...000+0000`; Bulk query CSV uses `...000Z`.
_REST_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


class CsvFormatError(ValueError):
    """The upload cannot be processed at all: the whole job fails with this message."""


@dataclass(frozen=True)
class CsvTable:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def parse_upload(data: bytes, column_delimiter: str, line_ending: str) -> CsvTable:
    """Parse uploaded job data as Salesforce does, or raise CsvFormatError for the job."""
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 BOM from Excel exports is accepted
    except UnicodeDecodeError as exc:
        raise CsvFormatError(f"ClientInputError : Invalid UTF-8 in job data: {exc}") from exc
    # Salesforce refuses data whose line endings disagree with the job's lineEnding.
    if line_ending == "LF" and "\r\n" in text:
        raise CsvFormatError(
            "ClientInputError : LineEnding is invalid on user data. "
            "Current LineEnding setting is LF"
        )
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=DELIMITERS[column_delimiter], strict=True
    )
    try:
        lines = [line for line in reader if line]  # blank lines carry no record
    except csv.Error as exc:
        raise CsvFormatError(f"ClientInputError : Invalid CSV: {exc}") from exc
    if not lines:
        raise CsvFormatError("ClientInputError : No data found in job data")
    header = tuple(name.strip() for name in lines[0])
    seen: set[str] = set()
    for name in header:
        if not name:
            raise CsvFormatError("InvalidBatch : Field name not found : ")
        if name.lower() in seen:
            raise CsvFormatError(f"InvalidBatch : Duplicate field name: {name}")
        seen.add(name.lower())
    rows = []
    for number, line in enumerate(lines[1:], start=1):
        if len(line) != len(header):
            raise CsvFormatError(
                f"ClientInputError : Record {number} has {len(line)} columns "
                f"but the header has {len(header)}"
            )
        rows.append(tuple(line))
    return CsvTable(header, tuple(rows))


def write_csv(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    column_delimiter: str = "COMMA",
    line_ending: str = "LF",
) -> bytes:
    """Every value quoted, like Salesforce's result files (so empty and null look alike)."""
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=DELIMITERS[column_delimiter],
        lineterminator=LINE_ENDINGS[line_ending],
        quoting=csv.QUOTE_ALL,
    )
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def sf_error(error_code: str, message: str, fields: Sequence[str] = ()) -> str:
    """The `sf__Error` cell: `CODE:message:Field1,Field2 --` as in Salesforce failed results."""
    return f"{error_code}:{message}:{','.join(fields)} --"


def _lookup(record: Mapping[str, Any], name: str) -> tuple[str, Any] | None:
    """Case-insensitive key lookup (SOQL names are case-insensitive, JSON keys canonical)."""
    if name in record:
        return name, record[name]
    lowered = name.lower()
    for key, value in record.items():
        if key.lower() == lowered:
            return key, value
    return None


def resolve_path(record: Mapping[str, Any], column: str) -> tuple[str | None, Any]:
    """(canonical dotted name or None when a parent is null, value) of one SELECT column."""
    current: Any = record
    names: list[str] = []
    for part in column.split("."):
        if not isinstance(current, Mapping):
            return None, None  # a null parent: the column is empty in this row
        found = _lookup(current, part)
        if found is None:
            return None, None
        names.append(found[0])
        current = found[1]
    return ".".join(names), current


def render_value(value: Any) -> str:
    """One query result cell: null → empty, booleans lower-case, dateTime with `Z`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        # Compound fields (addresses, geolocations) come back as objects from REST SOQL.
        raise CsvFormatError(
            "FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query"
        )
    if isinstance(value, Decimal):
        return f"{value:f}"  # str() would write 1E+3 for some values
    text = str(value)
    if _REST_DATETIME.fullmatch(text):
        return text[:-5] + "Z"
    return text


def query_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Flatten REST-shaped query records into a CSV header and string rows."""
    header = list(columns)
    resolved = [False] * len(columns)
    rows: list[list[str]] = []
    for record in records:
        row = []
        for index, column in enumerate(columns):
            canonical, value = resolve_path(record, column)
            if canonical is not None and not resolved[index]:
                header[index] = canonical  # echo describe's spelling, not the query's
                resolved[index] = True
            row.append(render_value(value))
        rows.append(row)
    return header, rows
