"""The intake-form contract, loaded from data/intake_schema.yaml into typed, frozen objects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
SCHEMA_PATH = DATA_DIR / "intake_schema.yaml"

KINDS = ("yes_no", "integer", "number", "category")
# The safe loader, in C when PyYAML has libyaml (the same documents, parsed about ten times faster).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Column:
    """One intake column: its kind and, by kind, bounds or categories."""

    name: str
    group: str
    kind: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    unit: str = ""
    note: str = ""


@dataclass(frozen=True)
class Cause:
    name: str
    section: str
    conditions: tuple[str, ...]


@dataclass(frozen=True)
class Explain:
    """What `score --explain` adds: its columns, where they go, and how much each cites."""

    columns: tuple[str, ...]
    before: str
    reasons_up: int
    reasons_down: int
    reasons_separator: str
    ask_next_max: int


@dataclass(frozen=True)
class Schema:
    """The whole contract: input columns, labels, output and rejects columns."""

    version: int
    id_column: str
    id_min_length: int
    id_max_length: int
    yes_values: frozenset[str]
    no_values: frozenset[str]
    missing_markers: frozenset[str]
    formula_prefixes: tuple[str, ...]
    columns: tuple[Column, ...]
    causes: tuple[Cause, ...]
    triage_levels: tuple[str, ...]
    specialists: tuple[str, ...]
    top_conditions_max: int
    top_conditions_min_probability: float
    list_separator: str
    scores_template: tuple[str, ...]
    explain: Explain
    rejects_columns: tuple[str, ...]
    rejects_copied_from_input: tuple[str, ...]
    sha256: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def intake_columns(self) -> tuple[str, ...]:
        """The id column followed by every form column, in contract order."""
        return (self.id_column, *self.column_names)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.id_column, *(c.name for c in self.columns if c.required))

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"unknown intake column {name!r}")

    def columns_of(self, *, kind: str | None = None, group: str | None = None) -> tuple[Column, ...]:
        return tuple(
            c for c in self.columns if (kind is None or c.kind == kind) and (group is None or c.group == group)
        )

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(c for cause in self.causes for c in cause.conditions)

    @property
    def cause_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.causes)

    def cause_of(self, condition: str) -> str:
        for cause in self.causes:
            if condition in cause.conditions:
                return cause.name
        raise KeyError(f"unknown condition {condition!r}")

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(f"label_{c}" for c in self.conditions)

    @property
    def probability_columns(self) -> tuple[str, ...]:
        """The p_<condition> columns, then the p_cause_<cause> columns."""
        return (
            *(f"p_{c}" for c in self.conditions),
            *(f"p_cause_{c}" for c in self.cause_names),
        )

    @property
    def scores_columns(self) -> tuple[str, ...]:
        """The scores file's columns: `output.columns` with `p_<condition>` and `p_cause_<cause>` expanded."""
        expand = {
            "p_<condition>": [f"p_{c}" for c in self.conditions],
            "p_cause_<cause>": [f"p_cause_{c}" for c in self.cause_names],
        }
        return tuple(name for item in self.scores_template for name in expand.get(item, [item]))

    def output_columns(self, explain: bool = False) -> tuple[str, ...]:
        """The scores file's columns; with `explain`, the explanation columns before `explain.before`."""
        if not explain:
            return self.scores_columns
        at = self.scores_columns.index(self.explain.before)
        return (*self.scores_columns[:at], *self.explain.columns, *self.scores_columns[at:])

    @property
    def text_output_columns(self) -> tuple[str, ...]:
        """The scores columns after the probabilities (top_conditions, triage, ..., model_version)."""
        return tuple(c for c in self.scores_columns if c != self.id_column and c not in self.probability_columns)


def _column(raw: dict) -> Column:
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"column {raw.get('name')!r}: kind {kind!r} is not one of {KINDS}")
    if kind == "category" and not raw.get("categories"):
        raise ValueError(f"column {raw['name']!r}: a category column needs categories")
    if kind in ("integer", "number") and (raw.get("min") is None or raw.get("max") is None):
        raise ValueError(f"column {raw['name']!r}: a numeric column needs min and max")
    return Column(
        name=raw["name"],
        group=raw["group"],
        kind=kind,
        required=bool(raw.get("required", False)),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        categories=tuple(str(v) for v in raw.get("categories", ())),
        unit=raw.get("unit", ""),
        note=raw.get("note", ""),
    )


def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    """Read and check the schema YAML."""
    text = Path(path).read_bytes()
    raw = yaml.load(text, Loader=SAFE_LOADER)
    columns = tuple(_column(c) for c in raw["columns"])
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate column names")
    causes = tuple(
        Cause(name=c["name"], section=str(c["section"]), conditions=tuple(c["conditions"])) for c in raw["causes"]
    )
    conditions = [c for cause in causes for c in cause.conditions]
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"{path}: a condition is listed under two causes")
    template = list(raw["output"]["columns"])
    for needed in (raw["id_column"]["name"], "p_<condition>", "p_cause_<cause>"):
        if template.count(needed) != 1:
            raise ValueError(f"{path}: output.columns must list {needed!r} exactly once")
    ex = raw["output"]["explain"]
    explain = Explain(
        columns=tuple(ex["columns"]),
        before=ex["before"],
        reasons_up=int(ex["reasons_up"]),
        reasons_down=int(ex["reasons_down"]),
        reasons_separator=ex["reasons_separator"],
        ask_next_max=int(ex["ask_next_max"]),
    )
    if explain.before not in template or set(explain.columns) & set(template):
        raise ValueError(f"{path}: output.explain.before must be an output column and its columns new ones")
    return Schema(
        version=int(raw["schema_version"]),
        id_column=raw["id_column"]["name"],
        id_min_length=int(raw["id_column"]["min_length"]),
        id_max_length=int(raw["id_column"]["max_length"]),
        yes_values=frozenset(raw["yes_values"]),
        no_values=frozenset(raw["no_values"]),
        missing_markers=frozenset(raw["missing_markers"]),
        formula_prefixes=tuple(raw["formula_prefixes"]),
        columns=columns,
        causes=causes,
        triage_levels=tuple(raw["triage_levels"]),
        specialists=tuple(raw["specialists"]),
        top_conditions_max=int(raw["output"]["top_conditions_max"]),
        top_conditions_min_probability=float(raw["output"]["top_conditions_min_probability"]),
        list_separator=raw["output"]["list_separator"],
        scores_template=tuple(raw["output"]["columns"]),
        explain=explain,
        rejects_columns=tuple(raw["rejects"]["columns"]),
        rejects_copied_from_input=tuple(raw["rejects"]["copied_from_input"]),
        sha256=hashlib.sha256(text).hexdigest(),
    )


@cache
def default_schema() -> Schema:
    """The project's schema, loaded once per process."""
    return load_schema()
