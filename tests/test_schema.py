"""The schema YAML must match the contract document docs/intake-form.md exactly.

The expectations are parsed from the Markdown here, independently of the YAML, so an edit to
either file that is not mirrored in the other fails a test naming the column and the field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pipeline.contract.schema import SCHEMA_PATH, Schema, default_schema, load_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = REPO_ROOT / "docs" / "intake-form.md"
SHARED_DIR = REPO_ROOT.parent / "shared"

# The document's column headings and the schema group each stands for.
GROUP_OF_HEADING = {
    "Person and lifestyle": "person",
    "The complaint": "complaint",
    "Symptoms": "symptom",
    "Known history": "history",
    "Medications": "medication",
    "Laboratory results": "lab",
}
KIND_OF_WORD = {"yes/no": "yes_no", "integer": "integer", "number": "number", "category": "category"}
BOUNDS = re.compile(r"^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$")
CODE = re.compile(r"`([^`]*)`")


@dataclass
class DocColumn:
    name: str
    group: str
    kind: str
    required: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    unit: str = ""


@dataclass
class Doc:
    """What docs/intake-form.md says, parsed from its Markdown."""

    text: str
    sections: dict[str, str] = field(default_factory=dict)  # "##"/"###" heading -> body
    columns: list[DocColumn] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(body: str) -> list[list[str]]:
    """The rows of the first Markdown table in `body`, without header and separator."""
    lines = [ln for ln in body.splitlines() if ln.strip().startswith("|")]
    assert len(lines) >= 3, f"expected a Markdown table with a header, separator and rows in:\n{body}"
    assert re.fullmatch(r"\|(\s*-+\s*\|)+", lines[1].strip()), f"not a table separator: {lines[1]!r}"
    return [_cells(ln) for ln in lines[2:]]


def table_header(body: str) -> list[str]:
    return _cells(next(ln for ln in body.splitlines() if ln.strip().startswith("|")))


def _short_heading(heading: str) -> str:
    """`Symptoms (all yes/no)` -> `Symptoms`."""
    return re.sub(r"\s*\(.*\)\s*$", "", heading).strip()


def _parse_columns(doc: Doc) -> list[DocColumn]:
    columns = []
    for heading, body in doc.sections.items():
        group = GROUP_OF_HEADING.get(_short_heading(heading))
        if group is None:
            continue
        header = table_header(body)
        assert header[0] == "column", f"section {heading!r}: first table column is {header[0]!r}"
        for row in table_rows(body):
            assert len(row) == len(header), f"section {heading!r}: row {row} does not fit {header}"
            cell = dict(zip(header, row, strict=True))
            names = [n.strip() for n in cell["column"].split(",")]
            for name in names:
                assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{heading!r}: odd column name {name!r}"
                columns.append(_doc_column(heading, group, name, cell))
    return columns


def _doc_column(heading: str, group: str, name: str, cell: dict[str, str]) -> DocColumn:
    if "(all yes/no)" in heading:
        return DocColumn(name, group, "yes_no")
    if group == "lab":
        assert "numbers" in heading, f"lab heading {heading!r} no longer says the labs are numbers"
        lo, hi = _bounds(name, cell["bounds"])
        return DocColumn(name, group, "number", min=lo, max=hi, unit=cell["unit"])
    kind_words = [w.strip() for w in cell["kind"].split(",")]
    assert kind_words[0] in KIND_OF_WORD, f"{name}: unknown kind {cell['kind']!r}"
    assert set(kind_words[1:]) <= {"required"}, f"{name}: unknown kind qualifier in {cell['kind']!r}"
    col = DocColumn(name, group, KIND_OF_WORD[kind_words[0]], required="required" in kind_words[1:])
    values = cell["bounds / values"]
    if col.kind in ("integer", "number"):
        col.min, col.max = _bounds(name, values)
    elif col.kind == "category":
        col.categories = tuple(v.strip() for v in values.split(","))
    return col


def _bounds(name: str, text: str) -> tuple[float, float]:
    match = BOUNDS.match(text.strip())
    assert match, f"{name}: bounds {text!r} are not `min-max`"
    return float(match[1]), float(match[2])


def parse_doc(path: Path = DOC_PATH) -> Doc:
    text = path.read_text(encoding="utf-8")
    doc = Doc(text=text)
    parts = re.split(r"^(#{2,3}) +(.+?)\s*$", text, flags=re.MULTILINE)
    for i in range(1, len(parts), 3):
        doc.sections[parts[i + 1]] = parts[i + 2]
    doc.columns = _parse_columns(doc)
    return doc


DOC = parse_doc()


def section(title_start: str) -> str:
    matches = [h for h in DOC.sections if h.startswith(title_start)]
    assert len(matches) == 1, f"expected one section starting {title_start!r}, found {matches}"
    return DOC.sections[matches[0]]


def doc_causes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(cause, seed section, conditions) from the labels table."""
    causes = []
    for cause_cell, conditions_cell in table_rows(section("The labels")):
        match = re.fullmatch(r"([a-z_]+) \((\d+)\)", cause_cell)
        assert match, f"labels table: cause cell {cause_cell!r} is not `name (section)`"
        causes.append((match[1], match[2], tuple(c.strip() for c in conditions_cell.split(","))))
    return causes


def scores_table() -> dict[str, str]:
    return dict(table_rows(section("The scores file")))


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def diff_message(what: str, expected, actual) -> str:
    """A readable account of how two sequences differ."""
    expected, actual = list(expected), list(actual)
    lines = [f"{what}: the schema does not match docs/intake-form.md"]
    missing = [x for x in expected if x not in actual]
    extra = [x for x in actual if x not in expected]
    if missing:
        lines.append(f"  in the document, not the schema: {missing}")
    if extra:
        lines.append(f"  in the schema, not the document: {extra}")
    if not missing and not extra:
        at = next((i for i, (e, a) in enumerate(zip(expected, actual, strict=False)) if e != a), None)
        if at is None:  # one is the other repeated or truncated
            lines.append(f"  document has {len(expected)} items, schema {len(actual)}: {actual}")
        else:
            lines.append(
                f"  same items, different order: first at position {at}: "
                f"document {expected[at]!r}, schema {actual[at]!r}"
            )
    return "\n".join(lines)


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def test_document_parse_found_every_section():
    """Guards the parser itself: a renamed heading must not silently drop a group of columns."""
    groups = {c.group for c in DOC.columns}
    assert groups == set(GROUP_OF_HEADING.values()), f"parsed groups {sorted(groups)}"
    assert len(DOC.columns) == len({c.name for c in DOC.columns}), "a column appears twice in the document"
    supplements = [c.name for c in DOC.columns if c.name.endswith("_supplement")]
    assert supplements == [
        "iron_supplement",
        "vitamin_d_supplement",
        "magnesium_supplement",
        "b12_supplement",
    ], f"the comma-separated supplements row was parsed as {supplements}"


def test_default_schema_is_the_yaml_file(schema):
    assert default_schema().sha256 == hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert SCHEMA_PATH == REPO_ROOT / "data" / "intake_schema.yaml"


def test_column_names_match_document_in_order(schema):
    expected = [c.name for c in DOC.columns]
    assert list(schema.column_names) == expected, diff_message("columns", expected, schema.column_names)


@pytest.mark.parametrize("doc_col", DOC.columns, ids=lambda c: c.name)
def test_column_matches_document(schema, doc_col):
    if doc_col.name not in schema.column_names:
        pytest.fail(f"column {doc_col.name!r} of docs/intake-form.md is missing from the schema")
    col = schema.column(doc_col.name)
    expected = {
        "group": doc_col.group,
        "kind": doc_col.kind,
        "required": doc_col.required,
        "min": doc_col.min,
        "max": doc_col.max,
        "categories": doc_col.categories,
        "unit": doc_col.unit,
    }
    actual = {key: getattr(col, key) for key in expected}
    wrong = {k: f"document {expected[k]!r}, schema {actual[k]!r}" for k in expected if expected[k] != actual[k]}
    assert not wrong, f"column {doc_col.name!r} differs from docs/intake-form.md: {wrong}"


def test_identity_column(schema):
    rows = table_rows(section("Identity"))
    assert len(rows) == 1, f"identity table has {len(rows)} rows"
    name, kind, _notes = rows[0]
    match = re.fullmatch(r"text, (\d+)-(\d+) chars", kind)
    assert match, f"identity kind {kind!r} is not `text, min-max chars`"
    assert (schema.id_column, schema.id_min_length, schema.id_max_length) == (
        name,
        int(match[1]),
        int(match[2]),
    ), f"document: {name} with {match[1]}-{match[2]} chars"
    assert "required" in next(h for h in DOC.sections if h.startswith("Identity"))
    assert schema.intake_columns[0] == name


def test_required_columns(schema):
    expected = ["record_id", *(c.name for c in DOC.columns if c.required)]
    assert expected == ["record_id", "age"], f"document now requires {expected}"
    assert list(schema.required_columns) == expected, diff_message(
        "required columns", expected, schema.required_columns
    )


def test_causes_and_conditions(schema):
    heading = next(h for h in DOC.sections if h.startswith("The labels"))
    n_conditions, n_causes = map(int, re.fullmatch(r"The labels: (\d+) conditions in (\d+) causes", heading).groups())
    causes = doc_causes()
    assert len(causes) == n_causes, f"labels table has {len(causes)} causes, heading says {n_causes}"
    conditions = [c for _, _, conds in causes for c in conds]
    assert len(conditions) == n_conditions, f"{len(conditions)} conditions, heading says {n_conditions}"

    actual = [(c.name, c.section, c.conditions) for c in schema.causes]
    assert actual == causes, diff_message("causes (name, section, conditions)", causes, actual)
    assert list(schema.conditions) == conditions, diff_message("conditions", conditions, schema.conditions)
    assert len(schema.conditions) == 21 and len(schema.causes) == 6


def test_output_columns(schema):
    rows = scores_table()
    conditions = [c for _, _, conds in doc_causes() for c in conds]
    cause_names = [name for name, _, _ in doc_causes()]
    assert re.search(rf"\b{len(conditions)} columns\b", rows["p_<condition>"]), rows["p_<condition>"]
    assert re.search(rf"\b{len(cause_names)} columns\b", rows["p_cause_<cause>"]), rows["p_cause_<cause>"]
    expected = []
    for column in rows:
        if column == "p_<condition>":
            expected.extend(f"p_{c}" for c in conditions)
        elif column == "p_cause_<cause>":
            expected.extend(f"p_cause_{c}" for c in cause_names)
        else:
            expected.append(column)
    assert len(expected) == 1 + 21 + 6 + 5
    assert list(schema.scores_columns) == expected, diff_message("scores columns", expected, schema.scores_columns)
    probabilities = [c for c in expected if c.startswith("p_")]
    assert list(schema.probability_columns) == probabilities

    raw = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert raw["output"]["columns"] == list(rows), diff_message(
        "output.columns template in the YAML", list(rows), raw["output"]["columns"]
    )


def test_top_conditions_and_list_separator(schema):
    content = scores_table()["top_conditions"]
    match = re.search(r"up to (\d+) condition names.*`(.)`-separated", content)
    assert match, f"top_conditions row changed: {content!r}"
    assert schema.top_conditions_max == int(match[1])
    assert schema.list_separator == match[2]
    for column in ("red_flags", "specialists"):
        assert f"`{match[2]}`-separated" in scores_table()[column]


def test_specialists(schema):
    match = re.search(r"\(([^)]*)\)", scores_table()["specialists"])
    assert match, "the specialists row lists no specialists in parentheses"
    expected = [s.strip() for s in match[1].split(",")]
    assert expected == [
        "primary_care",
        "vascular_surgeon",
        "neurologist",
        "rheumatologist",
        "physiatrist",
        "dietitian",
    ], f"document specialists are now {expected}"
    assert list(schema.specialists) == expected, diff_message("specialists", expected, schema.specialists)


def test_triage_levels(schema):
    expected = CODE.findall(scores_table()["triage"])
    assert expected == ["emergency", "urgent", "routine", "self_care"], f"document triage is now {expected}"
    assert list(schema.triage_levels) == expected, diff_message("triage levels", expected, schema.triage_levels)


def test_yes_no_values(schema):
    rows = {row[0]: row for row in table_rows(section("Value conventions"))}
    values = [v.lower() for v in CODE.findall(rows["yes/no"][1])]
    assert len(values) == 8, f"yes/no row lists {values}"
    # The document lists them as yes/no pairs: `yes`, `no`, `y`, `n`, `true`, `false`, `1`, `0`.
    yes, no = values[0::2], values[1::2]
    assert yes == ["yes", "y", "true", "1"] and no == ["no", "n", "false", "0"], f"pairs: {values}"
    assert schema.yes_values == frozenset(yes), f"schema yes {sorted(schema.yes_values)}, document {yes}"
    assert schema.no_values == frozenset(no), f"schema no {sorted(schema.no_values)}, document {no}"
    assert not schema.yes_values & schema.no_values
    assert "case-insensitive" in table_header(section("Value conventions"))[1]
    assert all(v == v.lower() for v in schema.yes_values | schema.no_values), "accepted values not lower-case"


def test_missing_markers(schema):
    body = one_line(section("Value conventions"))
    match = re.search(r"missing markers (.*?) \(any case\) also mean unknown", body)
    assert match, "the missing-markers sentence of the document changed"
    markers = CODE.findall(match[1])
    assert markers == ["NA", "N/A", "null", "none"], f"document markers are now {markers}"
    rows = {row[0]: row for row in table_rows(section("Value conventions"))}
    assert all("unknown" in row[2] for row in rows.values()), "a blank cell no longer means unknown"
    expected = {"", *(m.lower() for m in markers)}
    assert schema.missing_markers == expected, (
        f"missing markers: schema {sorted(schema.missing_markers)}, document {sorted(expected)}"
    )


def test_formula_prefixes(schema):
    body = one_line(section("The scores file"))
    match = re.search(r"a cell starting with (.*?)\)", body)
    assert match, "the formula-injection sentence of the document changed"
    words = {"tab": "\t", "carriage return": "\r"}
    expected = []
    for item in re.split(r",\s*|\s+or\s+", match[1]):
        item = item.strip()
        code = CODE.fullmatch(item)
        assert code or item in words, f"unexpected formula prefix {item!r}"
        expected.append(code[1] if code else words[item])
    assert expected == ["=", "+", "-", "@", "\t", "\r"], f"document prefixes are now {expected}"
    assert list(schema.formula_prefixes) == expected, diff_message(
        "formula prefixes", expected, schema.formula_prefixes
    )


def test_rejects_columns(schema):
    body = one_line(section("Value conventions"))
    match = re.search(r"one line per bad cell, with (.*?)\.", body)
    assert match, "the rejects-file sentence of the document changed"
    expected = CODE.findall(match[1])
    assert expected == ["row", "record_id", "field", "value", "reason"], f"document: {expected}"
    assert list(schema.rejects_columns) == expected, diff_message("rejects columns", expected, schema.rejects_columns)


@pytest.mark.parametrize(
    "local",
    ["docs/intake-form.md", "data/seed/000_08eac196c40283c7.txt"],
)
def test_copy_is_identical_to_shared(local):
    shared = SHARED_DIR / Path(local).relative_to(Path(local).parts[0])
    if not shared.exists():
        pytest.skip(f"{shared} is not present")
    ours, theirs = (REPO_ROOT / local).read_bytes(), shared.read_bytes()
    if ours != theirs:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        at = min(len(ours), len(theirs)) if at is None else at
        line = ours[:at].count(b"\n") + 1
        pytest.fail(
            f"{local} ({len(ours)} bytes) differs from {shared} ({len(theirs)} bytes) "
            f"first at byte {at} (line {line}): "
            f"ours {ours[at : at + 40]!r}, shared {theirs[at : at + 40]!r}"
        )
