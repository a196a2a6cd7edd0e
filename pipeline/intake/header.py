"""Header cells matched to the contract's columns (docs/intake-form.md, contract version 2).

A header cell names a column after trimming surrounding spaces, ignoring case, and reading
spaces and hyphens as underscores (`Age`, ` BMI `, `Leg Swelling`, `leg-swelling`). Two cells
that name the same column are fatal; a cell that names no column is an extra column (a warning),
with "did you mean" when it is one edit (insert, delete, substitute, transpose) away from a
missing column's name. The same matching serves CSV, Parquet, DataFrame and Arrow sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.contract.schema import Schema
from pipeline.intake.errors import IntakeFormatError

_SEPARATORS = re.compile(r"[\s\-]")


def column_key(cell: str) -> str:
    """The name a header cell stands for: trimmed, lower case, spaces and hyphens as underscores."""
    return _SEPARATORS.sub("_", cell.strip().lower())


def one_edit_apart(a: str, b: str) -> bool:
    """Whether b is a one-character insert, delete, substitution or adjacent transposition of a."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1 :]


@dataclass
class HeaderMatch:
    """The header's cells as column names (the contract's own spelling where a cell names one)."""

    names: list[str]  # one per header cell, unique
    warnings: list[str]


def _cell(text: str, position: int) -> str:
    return f"{text!r} (column {position + 1})"


def match_header(header: list[str], schema: Schema, expected_extra: tuple[str, ...] = ()) -> HeaderMatch:
    """Match header cells to the schema's columns and `expected_extra` (e.g. label columns).

    Raises IntakeFormatError for a header no form can be read with: no header, two cells naming
    the same column, a required column missing. Missing optional and extra columns are warnings.
    """
    if not any(cell.strip() for cell in header):
        raise IntakeFormatError("the file has no header row")
    known = {column_key(name): name for name in (*schema.intake_columns, *expected_extra)}
    names: list[str] = []
    first_cell: dict[str, int] = {}
    extra: list[int] = []
    for position, cell in enumerate(header):
        key = column_key(cell)
        if key in first_cell:
            earlier = first_cell[key]
            what = f"column {known[key]}" if key in known else "the same column"
            raise IntakeFormatError(
                f"header cells {_cell(header[earlier], earlier)} and {_cell(cell, position)} both name {what}"
            )
        if key:
            first_cell[key] = position
        if key in known:
            names.append(known[key])
        else:
            names.append(cell.strip() or f"(blank column {position + 1})")
            extra.append(position)
    present = set(names)
    extra_keys = {column_key(header[p]): header[p].strip() for p in extra if header[p].strip()}

    def near(column: str) -> str:
        close = [text for key, text in extra_keys.items() if one_edit_apart(key, column_key(column))]
        return f" (did you mean {column} for the header cell {close[0]!r}?)" if close else ""

    missing_required = [c for c in schema.required_columns if c not in present]
    if missing_required:
        raise IntakeFormatError(f"missing required column(s): {', '.join(c + near(c) for c in missing_required)}")
    missing = [c for c in schema.column_names if c not in present]
    warnings = []
    if missing:
        warnings.append(f"missing optional column(s), treated as blank: {', '.join(missing)}")
    if extra:

        def guess(position: int) -> str:
            key = column_key(header[position])
            close = [c for c in missing if one_edit_apart(key, c)]
            return f"{names[position]} (did you mean {close[0]}?)" if close else names[position]

        warnings.append(f"extra column(s) ignored: {', '.join(guess(p) for p in extra)}")
    return HeaderMatch(names, warnings)
