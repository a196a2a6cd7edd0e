"""Batch scoring against the intake contract (docs/intake-form.md): the scores and rejects files,
every bad-input class, file-level failures, interruption, odd-but-valid CSV, triage rules, the
model/scorer agreement check and the purity of `score_chunk`.

One smoke training goes into a temporary MLflow store (module fixture); its split data come from
the project's content-addressed data cache, so only the first run pays for generating them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.contract.loader import default_knowledge_base
from pipeline.contract.schema import REPO_ROOT
from pipeline.intake.frames import to_csv_table
from pipeline.intake.stream import validate_frame
from pipeline.learning.config import load_experiment
from pipeline.learning.train import train
from pipeline.scoring.score import score_chunk, score_file
from pipeline.scoring.triage import triage_columns
from pipeline.tracking.registry import CHAMPION_URI, REGISTERED_MODEL, ModelMismatchError, load_model
from pipeline.world.generate import generate_frame, write_dataset
from pipeline.world.network import default_model

FIXTURES = Path(__file__).parent / "fixtures"
KB = default_knowledge_base()
SCHEMA = KB.schema

# The scores file as docs/intake-form.md lists it (written out here, not taken from the schema).
CONDITIONS = [
    "deconditioning",
    "peripheral_artery_disease",
    "venous_insufficiency",
    "microvascular_dysfunction",
    "deep_vein_thrombosis",
    "iron_deficiency_anemia",
    "vitamin_d_deficiency",
    "magnesium_deficiency",
    "b12_folate_deficiency",
    "multiple_sclerosis",
    "peripheral_neuropathy",
    "parkinsons_disease",
    "post_stroke_fatigue",
    "statin_myopathy",
    "diuretic_electrolyte_imbalance",
    "beta_blocker_fatigue",
    "corticosteroid_myopathy",
    "rheumatoid_arthritis",
    "vasculitis",
    "inflammatory_bowel_disease",
    "systemic_lupus",
]
CAUSES = {
    "deconditioning": ["deconditioning"],
    "circulation": [
        "peripheral_artery_disease",
        "venous_insufficiency",
        "microvascular_dysfunction",
        "deep_vein_thrombosis",
    ],
    "nutrient": ["iron_deficiency_anemia", "vitamin_d_deficiency", "magnesium_deficiency", "b12_folate_deficiency"],
    "neurological": ["multiple_sclerosis", "peripheral_neuropathy", "parkinsons_disease", "post_stroke_fatigue"],
    "medication": [
        "statin_myopathy",
        "diuretic_electrolyte_imbalance",
        "beta_blocker_fatigue",
        "corticosteroid_myopathy",
    ],
    "inflammatory": ["rheumatoid_arthritis", "vasculitis", "inflammatory_bowel_disease", "systemic_lupus"],
}
P_COLUMNS = [f"p_{c}" for c in CONDITIONS]
P_CAUSE_COLUMNS = [f"p_cause_{c}" for c in CAUSES]
SCORES_COLUMNS = [
    "record_id",
    *P_COLUMNS,
    *P_CAUSE_COLUMNS,
    "top_conditions",
    "triage",
    "red_flags",
    "specialists",
    "model_version",
]
REJECTS_COLUMNS = ["row", "record_id", "field", "value", "reason"]
TRIAGE_LEVELS = {"emergency", "urgent", "routine", "self_care"}
SPECIALISTS = {"primary_care", "vascular_surgeon", "neurologist", "rheumatologist", "physiatrist", "dietitian"}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MISSING_MARKERS = {"", "na", "n/a", "null", "none"}


# ---------------------------------------------------------------------------------------- helpers


def neutral(text: str) -> str:
    """What the contract says an output cell copied from the input looks like."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


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


def score(store, path: Path, out: Path | None = None, **kwargs):
    out = out or path.with_name(path.stem + ".scores.csv")
    summary = score_file(path, out, store.loaded, store.kb, **kwargs)
    return summary, read_rows(out)[1], read_rows(out.with_name(f"{out.stem}.rejects.csv"))[1]


def probabilities(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[c]) for c in P_COLUMNS + P_CAUSE_COLUMNS])


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One smoke training into a fresh SQLite store; the champion loaded for scoring."""
    root = tmp_path_factory.mktemp("score_mlflow")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    result = train(load_experiment("smoke"), experiment="test-score")
    assert result.promoted  # the first model in a fresh store is the champion
    loaded = load_model(CHAMPION_URI, KB.schema)
    yield SimpleNamespace(root=root, version=result.version, loaded=loaded, kb=KB)
    patch.undo()


@pytest.fixture(scope="module")
def base_rows() -> list[list[str]]:
    """15 valid synthetic forms as rows of cell text (header first), all intake columns."""
    frame = generate_frame(default_model(), 15, 2024)
    buf = io.BytesIO()
    pacsv.write_csv(to_csv_table(frame, SCHEMA), buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue().decode("utf-8"))))
    assert rows[0] == list(SCHEMA.intake_columns) and len(rows) == 16
    return rows


# ------------------------------------------------------------------------------ 1. golden small file

GOLDEN_REJECTS = [
    (3, "p003", "bmi", "25 kg", "not a number"),
    (4, "p004", "age", "130", "above the maximum 110"),
    (5, "p005", "smoking", "sometimes", "not one of: never, former, current"),
    (5, "p005", "severity", "7.5", "not a whole number"),
    (6, "p001", "record_id", "p001", "repeated record_id (first used at row 1)"),
    (7, "p007", "", "p007,41,female,23", "row has 4 fields, the header has 12"),
]


def test_golden_small_file(store, tmp_path):
    src = FIXTURES / "score_golden.csv"
    summary, scores, rejects = score(store, src, tmp_path / "golden.csv")

    assert (summary.rows_read, summary.rows_scored, summary.rows_rejected) == (9, 4, 5)
    assert any(w.startswith("missing optional column(s)") for w in summary.warnings)
    assert [r["record_id"] for r in scores] == ["p001", "p002", "p008", "p009"]

    header, _ = read_rows(tmp_path / "golden.rejects.csv")
    assert header == REJECTS_COLUMNS
    assert len(rejects) == len(GOLDEN_REJECTS)
    for line, (row, record_id, field, value, reason) in zip(rejects, GOLDEN_REJECTS, strict=True):
        assert (int(line["row"]), line["record_id"], line["field"], line["value"]) == (row, record_id, field, value)
        assert reason in line["reason"], (line, reason)

    header, _ = read_rows(tmp_path / "golden.csv")
    assert header == SCORES_COLUMNS
    flag_names = {f.name for f in KB.red_flags}
    for row in scores:
        p = {c: float(row[c]) for c in P_COLUMNS + P_CAUSE_COLUMNS}
        assert all(0.0 <= v <= 1.0 for v in p.values()), row["record_id"]
        for cause, members in CAUSES.items():
            assert p[f"p_cause_{cause}"] >= max(p[f"p_{c}"] for c in members), (row["record_id"], cause)
        top = row["top_conditions"].split(";") if row["top_conditions"] else []
        assert len(top) <= 3 and set(top) <= set(CONDITIONS)
        listed = [p[f"p_{c}"] for c in top]
        assert listed == sorted(listed, reverse=True) and all(v >= 0.05 for v in listed)
        others = [p[f"p_{c}"] for c in CONDITIONS if c not in top]
        if len(top) < 3:
            assert all(v < 0.05 for v in others)
        elif others:
            assert min(listed) >= max(others)
        assert row["triage"] in TRIAGE_LEVELS
        flags = row["red_flags"].split(";") if row["red_flags"] else []
        assert set(flags) <= flag_names
        specialists = row["specialists"].split(";")
        assert specialists[0] == "primary_care" and set(specialists) <= SPECIALISTS
        assert len(specialists) == len(set(specialists))
        assert row["model_version"] == store.version
    p002 = scores[1]
    # field-only rules fire whatever the model says: potassium 2.8 and severity 8
    assert {"severe_hypokalaemia", "severe_persistent_fatigue"} <= set(p002["red_flags"].split(";"))
    assert p002["triage"] in {"urgent", "emergency"}


# --------------------------------------------------------------------------- 2. bad-input classes


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("bmi", "25 kg", "not a number"),
        ("hours_sitting_per_day", "7,5", "not a number"),
        ("crp_mg_l", "inf", "not a number"),
        ("ferritin_ng_ml", "NaN", "not a number"),
        ("d_dimer_ng_ml", "1e3", "not a number"),
        ("age", "130", "above the maximum 110"),
        ("age", "17", "below the minimum 18"),
        ("abi", "0.05", "below the minimum 0.1"),
        ("sex", "unknown", "not one of"),
        ("laterality", "left", "not one of"),
        ("leg_swelling", "maybe", "not yes/no"),
        ("chest_pain", "2", "not yes/no"),
        ("severity", "7.5", "not a whole number"),
        ("age", "NA", "required field is blank"),
    ],
)
def test_bad_cell_rejects_its_row_only(store, tmp_path, field, value, reason):
    rows = [base_row("ok-1"), base_row("bad", **{field: value}), base_row("ok-2")]
    summary, scores, rejects = score(store, write_intake(tmp_path / "in.csv", rows))
    assert (summary.rows_read, summary.rows_scored, summary.rows_rejected) == (3, 2, 1)
    assert [r["record_id"] for r in scores] == ["ok-1", "ok-2"]
    assert len(rejects) == 1
    line = rejects[0]
    assert (line["row"], line["record_id"], line["field"], line["value"]) == ("2", "bad", field, value)
    assert reason in line["reason"]


def test_accepted_encodings_are_normalised_not_rejected(store, tmp_path):
    yes, no, blank = ["Yes", " y ", "TRUE", "1", "Y"], ["No", " n", "FALSE", "0"], ["NA", "N/A", "null", "none", " "]
    rows = [base_row("canon-yes", leg_swelling="yes", sex="male", age="61")]
    rows += [base_row(f"yes-{i}", leg_swelling=v, sex="male", age="61") for i, v in enumerate(yes)]
    rows += [base_row("canon-no", leg_swelling="no", sex="male", age="61")]
    rows += [base_row(f"no-{i}", leg_swelling=v, sex="male", age="61") for i, v in enumerate(no)]
    rows += [base_row("canon-blank", leg_swelling="", sex="male", age="61")]
    rows += [base_row(f"blank-{i}", leg_swelling=v, sex="male", age="61") for i, v in enumerate(blank)]
    rows += [base_row("cat", leg_swelling="yes", sex=" MALE ", age="61")]
    rows += [base_row("num", leg_swelling="yes", sex="Male", age=" 61.0 ")]
    rows += [base_row("plus", leg_swelling="yes", sex="male", age="+61", bmi="NULL", laterality="None")]
    summary, scores, rejects = score(store, write_intake(tmp_path / "in.csv", rows))
    assert rejects == [] and summary.rows_rejected == 0 and summary.rows_scored == len(rows)
    by_id = {r["record_id"]: probabilities(r) for r in scores}
    for rid in [f"yes-{i}" for i in range(len(yes))] + ["cat", "num", "plus"]:
        np.testing.assert_array_equal(by_id[rid], by_id["canon-yes"], err_msg=rid)
    for rid in [f"no-{i}" for i in range(len(no))]:
        np.testing.assert_array_equal(by_id[rid], by_id["canon-no"], err_msg=rid)
    for rid in [f"blank-{i}" for i in range(len(blank))]:
        np.testing.assert_array_equal(by_id[rid], by_id["canon-blank"], err_msg=rid)
    assert not np.array_equal(by_id["canon-yes"], by_id["canon-no"])  # the cell does matter


def test_rows_with_too_many_or_too_few_fields_are_rejected_as_rows(store, tmp_path):
    n = len(SCHEMA.intake_columns)
    good = ["50" if c == "age" else "" for c in SCHEMA.intake_columns[1:]]
    lines = [
        ",".join(SCHEMA.intake_columns),
        ",".join(["a", *good]),
        ",".join(["too-many", *good, "extra"]),
        ",".join(["b", *good]),
        "too-few,50",
        ",".join(["c", *good]),
    ]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    summary, scores, rejects = score(store, path)
    assert (summary.rows_read, summary.rows_scored, summary.rows_rejected) == (5, 3, 2)
    assert [r["record_id"] for r in scores] == ["a", "b", "c"]
    assert [(r["row"], r["record_id"], r["field"]) for r in rejects] == [("2", "too-many", ""), ("4", "too-few", "")]
    assert f"row has {n + 1} fields, the header has {n}" in rejects[0]["reason"]
    assert f"row has 2 fields, the header has {n}" in rejects[1]["reason"]
    assert rejects[1]["value"] == "too-few,50"


def test_repeated_id_rejects_the_later_rows(store, tmp_path):
    rows = [base_row("same", age="40"), base_row("other"), base_row("same", age="70"), base_row("same", age="71")]
    summary, scores, rejects = score(store, write_intake(tmp_path / "in.csv", rows))
    assert [r["record_id"] for r in scores] == ["same", "other"]
    assert [(r["row"], r["record_id"], r["field"]) for r in rejects] == [
        ("3", "same", "record_id"),
        ("4", "same", "record_id"),
    ]
    assert all("first used at row 1" in r["reason"] for r in rejects)
    assert (summary.rows_scored, summary.rows_rejected) == (2, 2)


def test_missing_optional_and_extra_columns_give_warnings(store, tmp_path, capsys):
    columns = [c for c in SCHEMA.intake_columns if c not in ("bmi", "tremor")] + ["favourite_colour"]
    rows = [base_row("w1", favourite_colour="blue", sex="male"), base_row("w2", favourite_colour="=red")]
    path = write_intake(tmp_path / "in.csv", rows, columns)
    summary, scores, rejects = score(store, path)
    assert [r["record_id"] for r in scores] == ["w1", "w2"] and rejects == []
    missing = [w for w in summary.warnings if "missing optional" in w]
    extra = [w for w in summary.warnings if "extra column" in w]
    assert len(missing) == 1 and "bmi" in missing[0] and "tremor" in missing[0]
    assert "age" not in missing[0] and "sex" not in missing[0]
    assert len(extra) == 1 and "favourite_colour" in extra[0]

    # a missing column scores as all-blank, an extra one is ignored, and column order does not matter
    full = write_intake(tmp_path / "full.csv", [base_row("w1", sex="male"), base_row("w2")])
    shuffled = write_intake(tmp_path / "shuffled.csv", rows, columns[::-1])
    _, full_scores, _ = score(store, full)
    summary_shuffled, shuffled_scores, _ = score(store, shuffled)
    assert summary_shuffled.warnings == summary.warnings
    for a, b, c in zip(scores, full_scores, shuffled_scores, strict=True):
        np.testing.assert_array_equal(probabilities(a), probabilities(b))
        np.testing.assert_array_equal(probabilities(a), probabilities(c))

    capsys.readouterr()
    rejects_path = tmp_path / "elsewhere" / "bad-rows.csv"
    argv = ["score", "--input", str(path), "--output", str(tmp_path / "cli.csv"), "--rejects", str(rejects_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    warning_lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("bmi" in line and "tremor" in line for line in warning_lines)
    assert any("favourite_colour" in line for line in warning_lines)
    assert rejects_path.exists() and not (tmp_path / "cli.rejects.csv").exists()
    assert [r["record_id"] for r in read_rows(tmp_path / "cli.csv")[1]] == ["w1", "w2"]


def test_record_id_length_is_counted_in_characters(store, tmp_path):
    rows = [base_row("東" * 64), base_row("京" * 65), base_row("a" * 64), base_row("b" * 65)]
    _, scores, rejects = score(store, write_intake(tmp_path / "in.csv", rows))
    assert [r["record_id"] for r in scores] == ["東" * 64, "a" * 64]
    assert [(r["row"], r["field"]) for r in rejects] == [("2", "record_id"), ("4", "record_id")]
    assert all("longer than 64" in r["reason"] for r in rejects)


def test_malformed_row_record_id_comes_from_the_record_id_column(store, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("age,sex,record_id\n30,male,a\n40,female,b,extra\n50,male,c\n")
    _, scores, rejects = score(store, src)
    assert [r["record_id"] for r in scores] == ["a", "c"]
    assert [(r["row"], r["field"]) for r in rejects] == [("2", "")]
    # the value under the record_id column (or nothing), never another column's value such as the age
    assert rejects[0]["record_id"] in ("b", "")


FILE_LEVEL_FAILURES = {
    "missing_required_column": b"record_id,sex,bmi\na,male,25\n",
    "empty_file": b"",
    "only_a_bom_and_blank_lines": b"\xef\xbb\xbf\r\n\r\n",
    "not_utf8": "record_id,age\nJos\xe9,30\n".encode("latin-1"),
    "binary_gzip": bytes.fromhex("1f8b0800000000000003") + bytes(range(256)),
    "binary_png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(40)),
    "html_not_an_intake_csv": b"<!doctype html>\n<html><body><p>leg fatigue</p></body></html>\n",
    "no_such_file": None,
}


@pytest.mark.parametrize("case", list(FILE_LEVEL_FAILURES))
def test_file_level_failures_exit_2_with_one_error_line(store, tmp_path, capsys, case):
    work = tmp_path / "work"
    work.mkdir()
    src = work / "intake.csv"
    if FILE_LEVEL_FAILURES[case] is not None:
        src.write_bytes(FILE_LEVEL_FAILURES[case])
    capsys.readouterr()
    code = main(["score", "--input", str(src), "--output", str(work / "scores.csv")])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:") and "Traceback" not in captured.err
    left = sorted(p.name for p in work.iterdir())
    assert left == (["intake.csv"] if src.exists() else [])  # no output, no rejects, no temp file


def test_undecodable_bytes_after_the_first_megabyte_fail_cleanly(store, tmp_path, capsys):
    """The header check reads only the first MiB; a bad byte further on must still fail the run cleanly."""
    filler = "," * (len(SCHEMA.intake_columns) - 2)
    text = ",".join(SCHEMA.intake_columns) + "\n" + "".join(f"r{i},30{filler}\n" for i in range(20_000))
    assert len(text) > 1 << 20
    work = tmp_path / "work"
    work.mkdir()
    src = work / "intake.csv"
    src.write_bytes(text.encode() + f"Jos\xe9,30{filler}\n".encode("latin-1"))
    (work / "scores.csv").write_text("previous\n")
    capsys.readouterr()
    code = main(["score", "--input", str(src), "--output", str(work / "scores.csv")])
    captured = capsys.readouterr()
    assert code == 2
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith("error:")
    assert sorted(p.name for p in work.iterdir()) == ["intake.csv", "scores.csv"]
    assert (work / "scores.csv").read_text() == "previous\n"


# ---------------------------------------------------------------------- 3. property: nothing lost

JUNK = st.one_of(
    st.sampled_from(
        [
            "25 kg",
            "7,5",
            "inf",
            "-inf",
            "nan",
            "1e3",
            "130",
            "-1",
            "maybe",
            "",
            " ",
            "NA",
            "=1+2",
            "@SUM(A1)",
            'say "hi"',
            "a,b",
            "line\nbreak",
            "東京",
            "0x10",
            "1.2.3",
            "99999999999",
            "yes",
            "one_leg",
        ]
    ),
    st.text(
        alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"], include_characters='\n\t,"'),
        max_size=12,
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), block_bytes=st.sampled_from([None, 2048, 4096]))
def test_every_row_ends_up_in_exactly_one_file(store, base_rows, data, block_bytes):
    header, body = base_rows[0], base_rows[1:]
    n_fields = len(header)
    # each record: its cells, the columns replaced by junk, whether a field was dropped or added
    # (its cells then sit under other columns), and whether it was corrupted or is a copy
    records = [{"cells": list(r), "junk_cols": set(), "shifted": False, "touched": False} for r in body]
    for _ in range(data.draw(st.integers(1, 6), label="n_ops")):
        kind = data.draw(st.sampled_from(["cell", "cell", "cell", "drop", "add", "dup"]), label="op")
        i = data.draw(st.integers(0, len(records) - 1), label="line")
        rec = records[i]
        if kind == "dup":
            at = data.draw(st.integers(i + 1, len(records)), label="copy_at")
            records.insert(
                at, {**rec, "cells": list(rec["cells"]), "junk_cols": set(rec["junk_cols"]), "touched": True}
            )
            continue
        if kind == "cell":
            j = data.draw(st.integers(0, len(rec["cells"]) - 1), label="cell")
            rec["cells"][j] = data.draw(JUNK, label="junk")
            rec["junk_cols"].add(j)
        elif kind == "drop":
            rec["cells"].pop(data.draw(st.integers(0, len(rec["cells"]) - 1), label="dropped"))
            rec["shifted"] = True
        else:
            rec["cells"].insert(
                data.draw(st.integers(0, len(rec["cells"])), label="at"), data.draw(JUNK, label="added")
            )
            rec["shifted"] = True
        rec["touched"] = True

    n = len(records)
    malformed = {k + 1 for k, r in enumerate(records) if len(r["cells"]) != n_fields}
    seen: set[str] = set()
    repeated = set()
    for k, r in enumerate(records, start=1):
        if k in malformed:
            continue
        rid = r["cells"][0].strip()
        if rid.lower() in MISSING_MARKERS:
            continue
        if rid in seen:
            repeated.add(k)
        seen.add(rid)
    may_be_rejected = {k + 1 for k, r in enumerate(records) if r["touched"]} | repeated

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "intake.csv"
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(r["cells"] for r in records)
        src.write_text(buf.getvalue(), encoding="utf-8", newline="")
        summary, scores, rejects = score(store, src, **({"block_bytes": block_bytes} if block_bytes else {}))
        assert sorted(p.name for p in Path(tmp).iterdir()) == [
            "intake.csv",
            "intake.scores.csv",
            "intake.scores.rejects.csv",
        ]

    rejected = {int(r["row"]) for r in rejects}
    assert summary.rows_read == n
    assert summary.rows_scored + summary.rows_rejected == n
    assert len(scores) == summary.rows_scored and len(rejected) == summary.rows_rejected
    assert rejected <= set(range(1, n + 1))
    assert [int(r["row"]) for r in rejects] == sorted(int(r["row"]) for r in rejects)  # in input order
    scored_positions = sorted(set(range(1, n + 1)) - rejected)
    assert len(scored_positions) == len(scores)  # so every position is in exactly one file
    for pos, row in zip(scored_positions, scores, strict=True):
        assert row["record_id"] == neutral(records[pos - 1]["cells"][0].strip()), pos
    assert malformed | repeated <= rejected
    assert rejected <= may_be_rejected, sorted(rejected - may_be_rejected)
    for line in rejects:
        pos, rec = int(line["row"]), records[int(line["row"]) - 1]
        if pos in malformed:
            assert line["field"] == "" and f"the header has {n_fields}" in line["reason"]
            continue
        if rec["shifted"]:
            continue  # a dropped and an added field: the row has the right length but misplaced cells
        col = header.index(line["field"])
        assert col in rec["junk_cols"] or (col == 0 and pos in repeated), (pos, line)
        assert line["value"] == neutral(rec["cells"][col]), (pos, line)


# --------------------------------------------------------------------------- 4. interrupted run


@pytest.fixture(scope="module")
def big_intake(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "intake.csv"
    return write_dataset(default_model(), 150_000, 99, path, "csv")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_leaves_previous_outputs_untouched(store, big_intake, tmp_path, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    scores, rejects = out_dir / "scores.csv", out_dir / "scores.rejects.csv"
    scores.write_bytes(b"record_id,p_deconditioning\nold,0.5\n")
    rejects.write_bytes(b"row,record_id,field,value,reason\n")
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "score", "--input", str(big_intake), "--output", str(scores)],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.glob(".*.partial")):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no .partial file appeared (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # well into the writing
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-2000:]
    assert not list(out_dir.glob("*.partial")) and not list(out_dir.glob(".*"))
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before


# ----------------------------------------------------------------- 5. odd but valid CSV round trip


def test_quotes_multiline_bom_crlf_unicode_and_formula_ids(store, tmp_path):
    ids = ["a,b", "line1\nline2", "cr\r\nlf", 'say "hi"', "patiënt-ü-東京", "=cmd|' /C calc'!A0", "+1", "-2", "@x"]
    rows = [base_row(rid, sex="female") for rid in ids]
    rows += [
        base_row("=bad-age", age="200"),
        base_row("@bad-sex", sex='=HYPERLINK("http://x")'),
        base_row("-bad-bmi", bmi="-5"),
    ]
    columns = ["record_id", "age", "sex", "bmi"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    writer.writerow(["+malformed", "50"])
    src = tmp_path / "odd.csv"
    src.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    assert b"\r\n" in src.read_bytes() and src.read_bytes().count(b'"') >= 6

    summary, scores, rejects = score(store, src)
    assert (summary.rows_read, summary.rows_scored, summary.rows_rejected) == (13, 9, 4)
    assert [r["record_id"] for r in scores] == [
        "a,b",
        "line1\nline2",
        "cr\r\nlf",
        'say "hi"',
        "patiënt-ü-東京",
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'-2",
        "'@x",
    ]
    assert [(r["row"], r["record_id"], r["field"], r["value"]) for r in rejects] == [
        ("10", "'=bad-age", "age", "200"),
        ("11", "'@bad-sex", "sex", '\'=HYPERLINK("http://x")'),
        ("12", "'-bad-bmi", "bmi", "'-5"),
        ("13", "'+malformed", "", "'+malformed,50"),
    ]


# ------------------------------------------------------------------------------- 6. triage rules


def typed_rows(*rows: dict[str, str]) -> pd.DataFrame:
    """Typed rows through the real validator, from a few cells each (the rest blank)."""
    full = [{"record_id": f"t{i}", "age": "60", **r} for i, r in enumerate(rows)]
    columns = ["record_id", "age", *sorted({k for r in full for k in r} - {"record_id", "age"})]
    raw = pd.DataFrame([[r.get(c, "") for c in columns] for r in full], columns=columns, dtype=str)
    result = validate_frame(raw, SCHEMA)
    assert result.rejects.empty, result.rejects
    return result.typed


def probs_frame(*rows: dict[str, float], base: float = 0.01) -> pd.DataFrame:
    frame = pd.DataFrame(base, index=range(len(rows)), columns=list(SCHEMA.probability_columns))
    for i, r in enumerate(rows):
        for name, value in r.items():
            frame.loc[i, name] = value
    return frame


def triage_one(fields: dict[str, str], probs: dict[str, float]) -> dict[str, str]:
    out = triage_columns(KB, typed_rows(fields).reset_index(drop=True), probs_frame(probs))
    return {k: v[0].as_py() for k, v in out.items()}


DVT = {"p_deep_vein_thrombosis": 0.5, "p_cause_circulation": 0.5}


@pytest.mark.parametrize(
    ("fields", "probs", "triage", "flags"),
    [
        ({"laterality": "one_leg", "leg_swelling": "yes"}, DVT, "urgent", ["likely_dvt"]),
        ({"laterality": "one_leg", "calf_pain_tenderness_warmth": "yes"}, DVT, "urgent", ["likely_dvt"]),
        (
            {"laterality": "one_leg", "leg_swelling": "yes", "chest_pain": "yes"},
            DVT,
            "emergency",
            ["possible_pulmonary_embolism", "likely_dvt"],
        ),
        ({"shortness_of_breath": "yes"}, DVT, "emergency", ["possible_pulmonary_embolism"]),
        ({"pain_at_rest": "yes", "abi": "0.4"}, {}, "urgent", ["rest_pain_arterial_disease"]),
        (
            {"pain_at_rest": "yes"},
            {"p_peripheral_artery_disease": 0.35, "p_cause_circulation": 0.35},
            "urgent",
            ["rest_pain_arterial_disease"],
        ),
        ({"potassium_mmol_l": "2.8"}, {}, "urgent", ["severe_hypokalaemia"]),
        ({"ck_u_l": "6000"}, {}, "urgent", ["very_high_ck"]),
        ({"hemoglobin_g_dl": "7.5"}, {}, "urgent", ["severe_anaemia"]),
        (
            {"onset": "sudden", "laterality": "one_leg", "muscle_weakness": "yes", "prior_stroke": "no"},
            {},
            "urgent",
            ["new_neurological_deficit"],
        ),
        ({"unintended_weight_loss": "yes"}, {}, "routine", ["unintended_weight_loss"]),
        ({"severity": "7"}, {}, "routine", ["severe_persistent_fatigue"]),
        # nothing worrying
        (
            {"laterality": "both_legs", "leg_swelling": "no", "potassium_mmol_l": "4.1", "severity": "3"},
            {},
            "self_care",
            [],
        ),
        ({}, {"p_vitamin_d_deficiency": 0.5, "p_cause_nutrient": 0.5}, "routine", []),
        # near misses: each rule's condition just fails
        ({"laterality": "both_legs", "leg_swelling": "yes"}, DVT, "routine", []),
        ({"leg_swelling": "yes"}, DVT, "routine", []),  # laterality blank satisfies no field test
        ({"laterality": "one_leg", "leg_swelling": "yes"}, {"p_deep_vein_thrombosis": 0.15}, "self_care", []),
        ({"pain_at_rest": "yes", "abi": "0.6"}, {}, "self_care", []),
        ({"pain_at_rest": "no", "abi": "0.4"}, {}, "self_care", []),
        ({"potassium_mmol_l": "3.0"}, {}, "self_care", []),
        ({"onset": "sudden", "laterality": "one_leg", "muscle_weakness": "yes"}, {}, "self_care", []),
        ({"severity": "6"}, {}, "self_care", []),
    ],
)
def test_triage_rules_fire_where_written(fields, probs, triage, flags):
    out = triage_one(fields, probs)
    assert out["triage"] == triage
    assert out["red_flags"] == ";".join(flags)


def test_nothing_worrying_is_self_care_with_primary_care_only():
    out = triage_one({}, {})
    assert out == {"top_conditions": "", "triage": "self_care", "red_flags": "", "specialists": "primary_care"}


@pytest.mark.parametrize(
    ("probs", "specialists"),
    [
        ({}, "primary_care"),
        ({"p_cause_circulation": 0.6}, "primary_care;vascular_surgeon"),
        ({"p_cause_inflammatory": 0.6}, "primary_care;rheumatologist"),
        ({"p_cause_circulation": 0.6, "p_cause_inflammatory": 0.7}, "primary_care;rheumatologist;vascular_surgeon"),
        ({"p_cause_neurological": 0.3, "p_cause_nutrient": 0.9}, "primary_care;dietitian;neurologist"),
        ({"p_cause_deconditioning": 0.4}, "primary_care;physiatrist"),
        ({"p_cause_medication": 0.9}, "primary_care"),  # medication's specialist is primary care, listed once
        ({"p_cause_medication": 0.9, "p_cause_circulation": 0.5}, "primary_care;vascular_surgeon"),
        ({"p_cause_circulation": 0.2}, "primary_care"),  # below the KB threshold (0.25)
    ],
)
def test_specialists_follow_causes_above_the_threshold(probs, specialists):
    assert KB.specialist_threshold == 0.25
    assert triage_one({}, probs)["specialists"] == specialists


@pytest.mark.parametrize(
    ("probs", "top"),
    [
        (
            {"p_vasculitis": 0.9, "p_deconditioning": 0.7, "p_statin_myopathy": 0.3, "p_systemic_lupus": 0.2},
            "vasculitis;deconditioning;statin_myopathy",
        ),
        (
            {"p_systemic_lupus": 0.2, "p_deconditioning": 0.6, "p_vasculitis": 0.4, "p_parkinsons_disease": 0.35},
            "deconditioning;vasculitis;parkinsons_disease",
        ),
        ({"p_vasculitis": 0.9, "p_deconditioning": 0.04}, "vasculitis"),
        ({"p_vasculitis": 0.06, "p_deconditioning": 0.05, "p_statin_myopathy": 0.049}, "vasculitis;deconditioning"),
        ({}, ""),
    ],
)
def test_top_conditions_at_most_three_most_probable_first(probs, top):
    assert triage_one({}, probs)["top_conditions"] == top


def test_triage_is_vectorised_row_by_row():
    """Many rows in one call give the same answers as one row at a time."""
    cases = [
        ({"laterality": "one_leg", "leg_swelling": "yes"}, DVT),
        ({}, {}),
        ({"potassium_mmol_l": "2.8"}, {"p_cause_inflammatory": 0.6}),
        ({}, {"p_vitamin_d_deficiency": 0.5, "p_cause_nutrient": 0.5}),
    ]
    typed = typed_rows(*(f for f, _ in cases)).reset_index(drop=True)
    together = triage_columns(KB, typed, probs_frame(*(p for _, p in cases)))
    for i, (fields, probs) in enumerate(cases):
        alone = triage_one(fields, probs)
        assert {k: v[i].as_py() for k, v in together.items()} == alone


# -------------------------------------------------------------------- 7. model and scorer agree


@pytest.fixture(scope="module")
def local_model(store, tmp_path_factory):
    dst = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(dst)))


def edited_copy(local_model: Path, where: Path, edit) -> Path:
    copy = where / "edited-model"
    shutil.copytree(local_model, copy)
    spec = yaml.safe_load((copy / "MLmodel").read_text())
    edit(spec["metadata"])
    (copy / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy


def test_model_for_another_schema_version_is_refused(local_model, tmp_path, capsys):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta.update(schema_version=99))
    with pytest.raises(ModelMismatchError) as err:
        load_model(str(copy), KB.schema)
    message = str(err.value).replace(str(copy), "<model>")
    assert re.search(r"\b99\b", message) and re.search(r"\b1\b", message), message

    src = write_intake(tmp_path / "in.csv", [base_row("a")])
    capsys.readouterr()
    assert main(["score", "--input", str(src), "--output", str(tmp_path / "s.csv"), "--model", str(copy)]) == 2
    err_text = capsys.readouterr().err
    assert len(err_text.splitlines()) == 1 and err_text.startswith("error:") and "99" in err_text
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.rejects.csv").exists()


def test_model_with_another_label_set_is_refused(local_model, tmp_path):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta["outputs"].remove("p_vasculitis"))
    with pytest.raises(ModelMismatchError, match="p_vasculitis"):
        load_model(str(copy), KB.schema)


def test_model_version_is_the_registered_version(store):
    for uri in (CHAMPION_URI, f"models:/{REGISTERED_MODEL}/{store.version}"):
        assert load_model(uri, KB.schema).version == store.version, uri


def test_model_version_of_latest_is_the_registered_version(store):
    assert load_model(f"models:/{REGISTERED_MODEL}/latest", KB.schema).version == store.version


def test_unedited_local_model_directory_scores_like_the_champion(store, local_model, tmp_path):
    loaded = load_model(str(local_model), KB.schema)
    assert loaded.version  # a local directory has no registry version, but the column is never empty
    src = FIXTURES / "score_golden.csv"
    score_file(src, tmp_path / "local.csv", loaded, KB)
    score_file(src, tmp_path / "registry.csv", store.loaded, KB)
    local, registry = read_rows(tmp_path / "local.csv")[1], read_rows(tmp_path / "registry.csv")[1]
    assert [r["record_id"] for r in local] == [r["record_id"] for r in registry] == ["p001", "p002", "p008", "p009"]
    for a, b in zip(local, registry, strict=True):
        np.testing.assert_array_equal(probabilities(a), probabilities(b))
        assert a["model_version"] == loaded.version
    assert (tmp_path / "local.rejects.csv").read_bytes() == (tmp_path / "registry.rejects.csv").read_bytes()


# ------------------------------------------------------------------------ 8. score_chunk is pure


def test_score_chunk_is_pure(store, base_rows):
    raw = pd.DataFrame(base_rows[1:], columns=base_rows[0], dtype=str)
    typed = validate_frame(raw, SCHEMA).typed
    typed.index = typed.index + 100
    assert len(typed) == 15 and typed.index[0] == 101
    before = typed.copy(deep=True)
    first = score_chunk(typed, store.loaded.model, KB, "v-test")
    second = score_chunk(typed, store.loaded.model, KB, "v-test")
    pd.testing.assert_frame_equal(typed, before)
    assert first.equals(second)
    assert first.column_names == SCORES_COLUMNS
    assert first.column("model_version").to_pylist() == ["v-test"] * 15
    assert first.column("record_id").to_pylist() == typed["record_id"].tolist()
    # each row's scores depend on that row alone: reversed input, reversed output
    reversed_ = score_chunk(typed.iloc[::-1], store.loaded.model, KB, "v-test")
    assert reversed_.equals(first.take(list(range(14, -1, -1))))
