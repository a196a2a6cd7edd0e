"""Batch scoring against the intake contract (docs/intake-form.md): the scores and rejects files,
nothing lost whatever the input, file-level failures through the CLI, interruption, text copied
from the input neutralised, and the purity of `score_chunk`.

The champion comes from one smoke training in a temporary MLflow store (the `store` fixture).
Cell validation, reading and triage have their own tests, which need no model.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from helpers import KB, P_CAUSE_COLUMNS, P_COLUMNS, SCHEMA, base_row, neutral, probabilities, read_rows, write_intake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.contract.schema import REPO_ROOT
from pipeline.intake.frames import to_csv_table
from pipeline.intake.stream import validate_frame
from pipeline.scoring.score import score_chunk, score_file
from pipeline.world.generate import generate_frame, write_dataset
from pipeline.world.network import default_model

FIXTURES = Path(__file__).parent / "fixtures"
SCORES_COLUMNS = list(SCHEMA.scores_columns)
REJECTS_COLUMNS = list(SCHEMA.rejects_columns)
MISSING_MARKERS = set(SCHEMA.missing_markers)


# ---------------------------------------------------------------------------------------- helpers


def score(store, path: Path, out: Path | None = None, **kwargs):
    out = out or path.with_name(path.stem + ".scores.csv")
    summary = score_file(path, out, store.loaded, store.kb, **kwargs)
    return summary, read_rows(out)[1], read_rows(out.with_name(f"{out.stem}.rejects.csv"))[1]


# --------------------------------------------------------------------------------------- fixtures


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
        top = row["top_conditions"].split(";") if row["top_conditions"] else []
        cut = SCHEMA.top_conditions_min_probability
        assert len(top) <= SCHEMA.top_conditions_max and set(top) <= set(SCHEMA.conditions)
        listed = [p[f"p_{c}"] for c in top]
        assert listed == sorted(listed, reverse=True) and all(v >= cut for v in listed)
        others = [p[f"p_{c}"] for c in SCHEMA.conditions if c not in top]
        if len(top) < SCHEMA.top_conditions_max:
            assert all(v < cut for v in others)
        elif others:
            assert min(listed) >= max(others)
        assert row["triage"] in SCHEMA.triage_levels
        flags = row["red_flags"].split(";") if row["red_flags"] else []
        assert set(flags) <= flag_names
        specialists = row["specialists"].split(";")
        assert specialists[0] == "primary_care" and set(specialists) <= set(SCHEMA.specialists)
        assert len(specialists) == len(set(specialists))
        assert row["model_version"] == store.version
    p002 = scores[1]
    # field-only rules fire whatever the model says: potassium 2.8 and severity 8
    assert {"severe_hypokalaemia", "severe_persistent_fatigue"} <= set(p002["red_flags"].split(";"))
    assert p002["triage"] in {"urgent", "emergency"}


# ------------------------------------------------------------- 2. what the CLI says about bad input


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
    return write_dataset(default_model(), 600_000, 99, path, "csv")  # long enough to interrupt mid-way


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
        # as from a terminal: a job started in the background inherits SIGINT ignored, and Python keeps it so
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.glob(".*.partial")):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no .partial file appeared (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        time.sleep(0.1)  # into the writing
        assert proc.poll() is None, "the run finished before it could be interrupted: use a bigger input"
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


# ------------------------------------------------------------------------ 6. score_chunk is pure


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


# --------------------------------------------------------------- 7. coherent cause probabilities

FORM_CELLS = {
    col.name: (
        ["yes", "no", ""]
        if col.kind == "yes_no"
        else [*col.categories, ""]
        if col.kind == "category"
        else [f"{col.min:g}", f"{(col.min + col.max) / 2:g}", f"{col.max:g}", ""]
    )
    for col in SCHEMA.columns
    if not col.required
}


@st.composite
def sparse_forms(draw, n: int = 12) -> pd.DataFrame:
    rows = []
    for i in range(n):
        fields = draw(st.lists(st.sampled_from(sorted(FORM_CELLS)), unique=True, max_size=20))
        rows.append({"record_id": f"f{i}", "age": str(draw(st.integers(18, 110))), **{
            f: draw(st.sampled_from(FORM_CELLS[f])) for f in fields
        }})  # fmt: skip
    return pd.DataFrame(rows).fillna("")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=sparse_forms())
def test_cause_probabilities_are_coherent_on_every_row(store, raw):
    """max(its conditions) <= P(cause) <= min(1, sum of its conditions): a union of events."""
    scores = score_chunk(validate_frame(raw, SCHEMA).typed, store.loaded.model, KB, "v").to_pandas()
    for cause in SCHEMA.causes:
        members = scores[[f"p_{c}" for c in cause.conditions]]
        p = scores[f"p_cause_{cause.name}"]
        rounding = 0.5e-6 * (len(cause.conditions) + 1)  # each value is rounded to six decimals
        assert (p >= members.max(axis=1)).all(), cause.name  # rounding is monotone: the max holds exactly
        assert (p <= members.sum(axis=1).clip(upper=1.0) + rounding).all(), cause.name


# ----------------------------------------------------- a model that prepares each chunk a chunk ahead


def test_posterior_features_made_a_chunk_ahead_give_the_same_scores(quick_model, tmp_path):
    """The default's family has the knowledge base's posterior features, which the batch scorer makes
    in a thread of its own, a chunk ahead: over many small chunks the scores are those of scoring
    each row in one go; a failure there reaches the caller as itself and leaves no output."""
    from pipeline.scoring.compact import CompactModel

    compact = CompactModel.load(quick_model.compact_form().save(tmp_path / "scoring.npz"))
    assert compact.needs_preparing
    frame = generate_frame(default_model(), 600, 2025)
    src = tmp_path / "intake.csv"
    pacsv.write_csv(to_csv_table(frame, SCHEMA), src)
    loaded = SimpleNamespace(model=compact, version="v-posterior")
    summary = score_file(src, tmp_path / "scores.csv", loaded, KB, block_bytes=8192)
    assert (summary.rows_read, summary.rows_scored) == (600, 600)
    at_once = score_chunk(validate_frame(pd.read_csv(src, dtype=str), SCHEMA).typed, compact, KB, "v-posterior")
    expected = pd.read_csv(io.BytesIO(_csv_bytes(at_once)), dtype=str, keep_default_na=False)
    got = pd.read_csv(tmp_path / "scores.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(got, expected)

    failing = SimpleNamespace(model=SimpleNamespace(needs_preparing=True), version="v")

    def prepare(typed):
        raise ValueError("this model was trained with knowledge base 000000000000: retrain it")

    failing.model.prepare = prepare
    with pytest.raises(ValueError, match="retrain"):
        score_file(src, tmp_path / "failed.csv", failing, KB, block_bytes=8192)
    assert not (tmp_path / "failed.csv").exists() and not (tmp_path / "failed.rejects.csv").exists()


def _csv_bytes(table) -> bytes:
    from pipeline.intake.outputs import CSV_OPTIONS

    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=CSV_OPTIONS)
    return buf.getvalue()


def test_a_failure_while_the_input_stalls_leaves_no_stage_behind(monkeypatch):
    """Scoring fails on the first chunk while the reader waits on an input that stalls for longer
    than a stage's close timeout (here 0.5 s instead of 10 s): once the input moves again every
    stage ends (a prepare thread once waited for good on a reader that had stopped without a last
    item, because it was told to stop after the reader)."""
    import threading

    from pipeline.scoring.background import ReadAhead
    from pipeline.scoring.score import _close_stages, _prepared

    monkeypatch.setattr(ReadAhead.close, "__defaults__", (0.5,))

    def stalling():
        yield SimpleNamespace(typed=[1])
        time.sleep(1.5)  # a pipe that delivers nothing for a while
        yield SimpleNamespace(typed=[2])

    model = SimpleNamespace(needs_preparing=True, prepare=lambda typed: typed)
    reader = ReadAhead(stalling(), depth=1, name="score-read")
    chunks = _prepared(reader, model)
    start = time.monotonic()
    with pytest.raises(RuntimeError):
        try:
            for _chunk, _prepared_features in chunks:
                raise RuntimeError("scoring failed")
        finally:
            _close_stages(reader, chunks)
    took = time.monotonic() - start
    time.sleep(2.0)  # the input moves again after 1.5 s; the stages poll for a stop every 0.1 s
    assert took < 5, took
    assert [t.name for t in threading.enumerate() if t.name.startswith("score-")] == []
