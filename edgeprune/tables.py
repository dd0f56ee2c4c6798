"""The one table writer: markdown and CSV tables from header + rows (cells already formatted
for markdown; raw values for CSV). Every report in the package writes its tables through it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table (no trailing newline); `align` per column: "l" (---), "r" (---:)
    or "c" (:---:)."""
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    rule = [marks[a] for a in align] if align else ["---"] * len(header)
    lines = [_row(header), "|" + "|".join(rule) + "|"] + [_row(row) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[Any]) -> str:
    """| a | b | (an empty cell is `| |`)."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def csv_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, line_end: str = "\n") -> str:
    """CSV text with a header line (`line_end="\\r\\n"`: the csv module's own default)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_records(records: Iterable[dict], columns: Sequence[str], *, line_end: str = "\n") -> str:
    """CSV of dict records, one column per name in `columns` (None and missing: empty)."""
    return csv_table(columns, (["" if record.get(c) is None else record[c] for c in columns]
                               for record in records), line_end=line_end)
