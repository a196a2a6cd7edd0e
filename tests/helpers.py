"""Helpers shared by the intake, scoring and triage tests: intake files from cell text, and
what the contract says outputs look like. Names and counts come from the schema."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pipeline.contract.loader import default_knowledge_base

KB = default_knowledge_base()
SCHEMA = KB.schema
P_COLUMNS = [f"p_{c}" for c in SCHEMA.conditions]
P_CAUSE_COLUMNS = [f"p_cause_{c}" for c in SCHEMA.cause_names]


def neutral(text: str) -> str:
    """What the contract says an output cell copied from the input looks like."""
    return "'" + text if text.startswith(tuple(SCHEMA.formula_prefixes)) else text


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file as (header, rows of strings), exactly as written (no type guessing, no trimming)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def write_intake(path: Path, rows: list[dict[str, str]], columns=None, newline: str = "\n") -> Path:
    """An intake CSV from dicts of cell text; columns default to every intake column."""
    columns = list(columns or SCHEMA.intake_columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    Path(path).write_text(buf.getvalue(), encoding="utf-8", newline="")
    return Path(path)


def base_row(record_id: str, **cells: str) -> dict[str, str]:
    """A valid form: everything blank but the id, the age and the given cells."""
    return {"record_id": record_id, "age": "50", **cells}


def probabilities(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[c]) for c in P_COLUMNS + P_CAUSE_COLUMNS])
