"""`score --engine spark` against the single-machine scorer (docs/intake-form.md, "Scoring at
cluster scale"): a local[2] session on a directory of three files with bad cells, malformed
rows and record ids repeated within and across files; nothing lost, nothing left behind on a
failure; and `mlflow.pyfunc.spark_udf` on the registered model returning the served columns.

The engine's pieces that need no Spark (input files, output directories, the cross-file id
bookkeeping) are tested first, without a session. One SparkSession serves the module.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from helpers import SCHEMA, probabilities, read_rows

from pipeline.cli import _explainer as explainer_factory  # what `score --explain` passes the engine
from pipeline.cli import main
from pipeline.engines.file_tasks import earlier_uses, part_name
from pipeline.engines.files import check_output_dirs, input_files, replaced_dirs
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.frames import to_csv_table
from pipeline.intake.header import column_key
from pipeline.scoring.score import score_file
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

# PySpark's own notice about pandas 3 (the engine uses Arrow batches, see ../shared/PITFALLS.md)
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
SCORES_COLUMNS = list(SCHEMA.scores_columns)
TEXT_COLUMNS = ["top_conditions", "triage", "red_flags", "specialists", "model_version"]
EXPLAINED = [*SCHEMA.output_columns(explain=True)]  # the scores with --explain: reasons, ask_next too


# ------------------------------------------------------------------------- the files of a job (no Spark)


def test_input_files_in_name_order_from_a_file_a_directory_or_a_glob(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt", ".hidden.csv", "_SUCCESS"):
        (tmp_path / name).write_text("record_id,age\n")
    (tmp_path / "sub").mkdir()
    assert input_files(str(tmp_path)) == [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.txt"]
    assert input_files(str(tmp_path / "*.csv")) == [tmp_path / "a.csv", tmp_path / "b.csv"]
    assert input_files(str(tmp_path / "b.csv")) == [tmp_path / "b.csv"]
    for spec, message in [
        (str(tmp_path / "nope"), "no such file"),
        (str(tmp_path / "*.parquet"), "no input files"),
        ("-", "reads files"),
    ]:
        with pytest.raises(IntakeFormatError, match=message):
            input_files(spec)


def test_output_directories_never_replace_inputs_or_other_files(tmp_path):
    src = tmp_path / "in" / "a.csv"
    src.parent.mkdir()
    src.write_text("record_id,age\n")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "part-00000.csv").write_text("x\n")
    check_output_dirs([tmp_path / "new", tmp_path / "old"], [src])  # earlier part files may be replaced
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    for targets, message in [
        ([tmp_path / "same", tmp_path / "same"], "two different directories"),
        ([tmp_path / "in", tmp_path / "r"], "holds\\) an input"),
        ([src, tmp_path / "r"], "holds\\) an input"),
        ([tmp_path / "home", tmp_path / "r"], "refusing to replace"),
    ]:
        with pytest.raises(IntakeFormatError, match=message):
            check_output_dirs(targets, [src])


def test_replaced_dirs_swap_in_on_success_and_leave_everything_on_failure(tmp_path):
    target = tmp_path / "scores"
    target.mkdir()
    (target / "part-00000.csv").write_text("old\n")
    with pytest.raises(RuntimeError), replaced_dirs(target) as (tmp,):
        (tmp / "part-00000.csv").write_text("new\n")
        raise RuntimeError("a task failed")
    assert (target / "part-00000.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
    with replaced_dirs(target) as (tmp,):
        (tmp / "part-00000.csv").write_text("new\n")
    assert (target / "part-00000.csv").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_part_files_sort_in_input_order():
    assert part_name(0, 3) == "part-00000.csv" and part_name(2, 3) == "part-00002.csv"
    names = [part_name(i, 123_456) for i in (0, 99_999, 100_000, 123_455)]
    assert names == sorted(names) and names[0] == "part-000000.csv"


def test_earlier_uses_name_the_first_file_and_row_of_each_repeated_id():
    uses_type = pa.list_(pa.struct([("file", pa.int64()), ("row", pa.int64())]))
    repeated = pa.table(
        {
            "record_id": ["x", "y"],
            "uses": pa.array(
                [[{"file": 0, "row": 4}, {"file": 2, "row": 1}], [{"file": 1, "row": 9}, {"file": 2, "row": 3}]],
                uses_type,
            ),
        }
    )
    earlier = earlier_uses(repeated)
    assert list(earlier) == [2]
    assert earlier[2].ids.to_pylist() == ["x", "y"]
    assert earlier[2].files.tolist() == [0, 1] and earlier[2].rows.tolist() == [4, 9]


def test_the_package_imports_without_pyspark():
    code = "import sys, pipeline.engines.spark, pipeline.cli; assert 'pyspark' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})


# ------------------------------------------------------------------------------- forms with trouble


def _rows(n: int, seed: int, prefix: str) -> list[list[str]]:
    """n valid synthetic forms as cell text (header first), ids `<prefix>00`, `<prefix>01`, ..."""
    frame = generate_frame(default_model(), n, seed)
    frame["record_id"] = [f"{prefix}{i:02d}" for i in range(n)]
    buf = io.BytesIO()
    pacsv.write_csv(to_csv_table(frame, SCHEMA), buf)
    return list(csv.reader(io.StringIO(buf.getvalue().decode("utf-8"))))


def _set(rows: list[list[str]], row: int, **cells: str) -> None:
    header = rows[0]
    for name, value in cells.items():
        rows[row][header.index(name)] = value


def _write(path: Path, rows: list[list[str]]) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def forms_dir(tmp_path_factory) -> Path:
    """Three files in name order a, b (gzip), c (c the largest, so Spark starts it first; its
    header in another order and spelling, one optional column missing, one extra)."""
    folder = tmp_path_factory.mktemp("forms")
    a = _rows(20, 11, "a")
    _set(a, 3, bmi="25 kg")
    _set(a, 5, age="130")
    _set(a, 7, record_id="a02")  # repeats row 3 (itself rejected: its id still counts)
    a[9] = a[9][:4]  # malformed: id a08 is never used
    _set(a, 11, record_id="=cmd")
    _write(folder / "a_forms.csv", a)

    b = _rows(20, 12, "b")
    _set(b, 2, record_id="a05")  # first used at a row 6
    _set(b, 4, record_id=" a05 ")  # the same id once trimmed
    _set(b, 6, record_id="a00", severity="7.5")  # two reject lines
    b[8] = [*b[8], "extra"]  # malformed, whatever its id
    _set(b, 10, record_id="b04")  # within b: first used at row 5
    _set(b, 12, record_id="NA")
    _set(b, 13, record_id="a02")
    _set(b, 18, record_id="a17")  # row 18 of a: the same row number in another file is still a repeat
    plain = _write(folder / "b_forms.csv", b)
    (folder / "b_forms.csv.gz").write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    plain.unlink()

    c = _rows(30, 13, "c")
    order = [*reversed(range(len(c[0])))]
    c = [[r[i] for i in order] for r in c]  # another column order
    drop = c[0].index("diet_quality")
    c = [[*r[:drop], *r[drop + 1 :]] for r in c]
    _set(c, 1, record_id="b00")
    _set(c, 2, record_id="a08")  # only in a malformed row before: a first use
    _set(c, 3, record_id="=cmd")
    _set(c, 5, bmi="25 kg")
    _set(c, 6, age="")
    c[0] = [h.replace("_", " ").title() if k % 2 else h.replace("_", "-") for k, h in enumerate(c[0])]
    c = [[*r, "free text" if k else "notes"] for k, r in enumerate(c)]
    _write(folder / "c_forms.csv", c)
    return folder


def reference(files: list[Path], store, tmp: Path) -> tuple[list[dict], list[tuple]]:
    """The single-machine scorer on the files concatenated in name order (rows reordered to one
    header): its scores, and its reject lines with each global row number mapped back to (file,
    row), a repeat of an id first used in another file naming that file."""
    header, lines, where = list(SCHEMA.intake_columns), [], []
    for path in files:
        rows = list(csv.reader(io.StringIO(_text(path))))
        keys = [column_key(h) for h in rows[0]]
        for k, row in enumerate(rows[1:], start=1):
            if len(row) == len(rows[0]):  # a well-formed row: its cells under the common header
                row = [row[keys.index(c)] if c in keys else "" for c in header]
            lines.append(row)
            where.append((str(path), k))
    _write(tmp / "all.csv", [header, *lines])
    explainer = explainer_factory(store.loaded.model, store.kb)
    score_file(
        tmp / "all.csv", tmp / "all_scores.csv", store.loaded, store.kb, tmp / "all_rejects.csv", explainer=explainer
    )
    rejects = []
    for r in read_rows(tmp / "all_rejects.csv")[1]:
        name, row = where[int(r["row"]) - 1]
        reason = r["reason"]
        first = re.match(r"repeated record_id \(first used at row (\d+)\)", reason)
        if first:
            first_name, first_row = where[int(first.group(1)) - 1]
            of = "" if first_name == name else f" of {first_name}"
            reason = f"repeated record_id (first used at row {first_row}{of})"
        rejects.append((name, row, r["record_id"], r["field"], r["value"], reason))
    return read_rows(tmp / "all_scores.csv")[1], rejects


def read_parts(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    header, rows = None, []
    for part in sorted(folder.glob("part-*.csv")):
        h, r = read_rows(part)
        assert header in (None, h), "every part file has the same header"
        header, rows = h, rows + r
    return header, rows


# ------------------------------------------------------------------------------------- Spark


@pytest.fixture(scope="module")
def spark(store):
    """One local[2] session for the module, started after the store fixture set the tracking URI
    (the workers inherit the environment; spark_udf's workers read the registry)."""
    pytest.importorskip("pyspark")
    from pipeline.engines.spark import spark_session

    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYTHONPATH")}
    session, started, _ = spark_session("local[2]")
    assert started
    yield session
    session.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def spark_run(spark, store, forms_dir, tmp_path_factory):
    from pipeline.engines.spark import score_spark

    out = tmp_path_factory.mktemp("spark_out")
    summary = score_spark(
        str(forms_dir), out / "scores", out / "rejects", store.loaded, store.kb, explainer_factory=explainer_factory
    )
    return summary, out


@pytest.mark.slow
def test_spark_equals_the_single_machine_scorer_across_files(spark_run, forms_dir, store, tmp_path):
    summary, out = spark_run
    files = input_files(str(forms_dir))
    names = [str(f) for f in files]
    ref_scores, ref_rejects = reference(files, store, tmp_path)

    header, scores = read_parts(out / "scores")
    assert header == EXPLAINED
    assert [r["record_id"] for r in scores] == [r["record_id"] for r in ref_scores]
    np.testing.assert_allclose(
        [probabilities(r) for r in scores], [probabilities(r) for r in ref_scores], rtol=0, atol=1e-9
    )
    for column in [*TEXT_COLUMNS, *SCHEMA.explain.columns]:
        assert [r[column] for r in scores] == [r[column] for r in ref_scores], column
    assert any(r[SCHEMA.explain.columns[0]] for r in scores)  # the explanations are there

    header, rejects = read_parts(out / "rejects")
    assert header == ["file", *SCHEMA.rejects_columns]
    got = [(r["file"], int(r["row"]), r["record_id"], r["field"], r["value"], r["reason"]) for r in rejects]
    assert got == ref_rejects

    a, b, c = names
    cited = {(r["file"], int(r["row"])): r["reason"] for r in rejects if r["reason"].startswith("repeated")}
    assert cited[(b, 2)] == f"repeated record_id (first used at row 6 of {a})"
    assert cited[(b, 4)] == f"repeated record_id (first used at row 6 of {a})"
    assert cited[(b, 10)] == "repeated record_id (first used at row 5)"
    assert cited[(c, 1)] == f"repeated record_id (first used at row 1 of {b})"
    assert cited[(c, 3)] == f"repeated record_id (first used at row 11 of {a})"
    assert cited[(b, 18)] == f"repeated record_id (first used at row 18 of {a})"
    assert (c, 2) not in cited  # a08 was only in a malformed row of a
    assert any(r["record_id"] == "'=cmd" for r in rejects)  # neutralised like the single-machine scorer
    assert {(r["file"], int(r["row"])) for r in rejects if r["field"] == ""} == {(a, 9), (b, 8)}  # malformed


@pytest.mark.slow
def test_nothing_is_lost_and_each_file_has_its_part_files(spark_run, forms_dir):
    summary, out = spark_run
    files = input_files(str(forms_dir))
    data_rows = {str(f): len(_text(f).splitlines()) - 1 for f in files}
    assert summary.rows_read == sum(data_rows.values()) == 70
    assert summary.rows_scored + summary.rows_rejected == summary.rows_read
    assert summary.files == 3 and summary.model_version
    assert any("extra column(s) ignored: notes" in w and "c_forms" in w for w in summary.warnings)
    assert not any("b_forms" in w for w in summary.warnings)  # b's header is the contract's
    assert any("diet_quality" in w for w in summary.warnings)
    _, scores = read_parts(out / "scores")
    _, rejects = read_parts(out / "rejects")
    assert len(scores) == summary.rows_scored
    assert len({(r["file"], r["row"]) for r in rejects}) == summary.rows_rejected
    for name, n in data_rows.items():
        rejected = {int(r["row"]) for r in rejects if r["file"] == name}
        assert rejected <= set(range(1, n + 1))
    for folder in ("scores", "rejects"):
        assert sorted(p.name for p in (out / folder).iterdir()) == [
            "part-00000.csv",
            "part-00001.csv",
            "part-00002.csv",
        ]


def test_one_task_scores_its_file_like_the_single_machine_scorer(store, tmp_path):
    """A task without Spark: its part files equal `score_file` on the file, but for an id an
    earlier file used, rejected naming that file; nothing temporary is left."""
    from pipeline.engines import file_tasks
    from pipeline.tracking.persistence import model_bytes

    rows = _rows(6, 31, "t")
    _set(rows, 2, bmi="25 kg")
    path = _write(tmp_path / "t.csv", rows)
    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()
    job = file_tasks.ScoringJob(
        files=(str(tmp_path / "earlier.csv"), str(path)),
        names=("earlier.csv", "t.csv"),
        kb=store.kb,
        model=model_bytes(store.loaded.model),
        model_version=store.loaded.version,
        model_digest="test",
        scores_dir=str(tmp_path / "s"),
        rejects_dir=str(tmp_path / "r"),
        earlier={1: file_tasks.EarlierUses(pa.array(["t04"]), np.array([0]), np.array([9]))},
    )
    result = pa.Table.from_batches(file_tasks.score_one_file(job, 1)).to_pylist()
    assert result == [{"file": 1, "rows_read": 6, "rows_scored": 4, "rows_rejected": 2, "error": None}]
    score_file(path, tmp_path / "one.csv", store.loaded, store.kb)
    header, scores = read_rows(tmp_path / "s" / "part-00001.csv")
    expected_header, expected = read_rows(tmp_path / "one.csv")
    assert header == expected_header == SCORES_COLUMNS
    assert scores == [r for r in expected if r["record_id"] != "t04"]
    _, rejects = read_rows(tmp_path / "r" / "part-00001.csv")
    assert [(r["file"], r["row"], r["field"]) for r in rejects] == [("t.csv", "2", "bmi"), ("t.csv", "5", "record_id")]
    assert rejects[1]["reason"] == "repeated record_id (first used at row 9 of earlier.csv)"
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["part-00001.csv"]  # no temporary file left


@pytest.mark.slow
def test_the_command_line_runs_the_same_job(spark_run, forms_dir, tmp_path, capsys):
    """`score --engine spark --explain` with a glob, on the active session: the same part files, byte for byte."""
    _, out = spark_run
    argv = ["score", "--engine", "spark", "--explain", "--input", str(forms_dir / "*_forms.csv*")]
    assert main([*argv, "--output", str(tmp_path / "scores"), "--rejects", str(tmp_path / "rejects")]) == 0
    printed = capsys.readouterr()
    assert "rows read 70" in printed.out and "3 file(s) on Spark local[2]" in printed.out
    assert "not a diagnosis" in printed.out and "c_forms.csv: missing optional column(s)" in printed.err
    for folder in ("scores", "rejects"):
        ours = sorted((tmp_path / folder).iterdir())
        assert [p.name for p in ours] == [p.name for p in sorted((out / folder).iterdir())]
        assert [p.read_bytes() for p in ours] == [p.read_bytes() for p in sorted((out / folder).iterdir())]


@pytest.mark.slow
def test_the_first_file_is_byte_for_byte_the_single_machine_output(spark_run, forms_dir, store, tmp_path):
    _, out = spark_run
    first = input_files(str(forms_dir))[0]
    explainer = explainer_factory(store.loaded.model, store.kb)
    score_file(first, tmp_path / "scores.csv", store.loaded, store.kb, tmp_path / "rejects.csv", explainer=explainer)
    assert (out / "scores" / "part-00000.csv").read_bytes() == (tmp_path / "scores.csv").read_bytes()
    _, mine = read_rows(out / "rejects" / "part-00000.csv")
    _, theirs = read_rows(tmp_path / "rejects.csv")
    assert [{k: v for k, v in r.items() if k != "file"} for r in mine] == theirs
    assert {r["file"] for r in mine} == {str(first)}


@pytest.mark.slow
def test_a_failed_job_leaves_no_output_and_earlier_output_intact(spark, store, tmp_path):
    from pipeline.engines.spark import score_spark

    folder = tmp_path / "in"
    folder.mkdir()
    good = _rows(10, 21, "g")
    _write(folder / "a.csv", good)
    # a file whose header is fine but whose bytes go bad after the first megabyte: only a task sees it
    bad = [[*r, "notes" if k == 0 else "x" * 2000] for k, r in enumerate(_rows(600, 22, "h"))]
    bad[-1][-1] = "NOT-UTF-8"
    _write(folder / "b.csv", bad)
    (folder / "b.csv").write_bytes((folder / "b.csv").read_bytes().replace(b"NOT-UTF-8", b"\xff\xfe"))
    earlier = tmp_path / "scores"
    earlier.mkdir()
    (earlier / "part-00000.csv").write_text("earlier run\n")
    with pytest.raises(IntakeFormatError, match="not UTF-8"):
        score_spark(str(folder), earlier, tmp_path / "rejects", store.loaded, store.kb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "scores"]
    assert [p.name for p in earlier.iterdir()] == ["part-00000.csv"]
    assert (earlier / "part-00000.csv").read_text() == "earlier run\n"

    (folder / "b.csv").write_text("record_id,bmi\nx,20\n")  # a required column missing: fails before Spark
    with pytest.raises(IntakeFormatError, match="b.csv: missing required column"):
        score_spark(str(folder), tmp_path / "new", tmp_path / "rejects", store.loaded, store.kb)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_spark_udf_on_the_registered_model_returns_the_served_columns(spark, store, forms_dir):
    """The registered model as a Spark UDF, plain and with params {"explain": true}, in one job:
    the served columns, equal to the pyfunc's own answer on the same forms."""
    import mlflow
    from pyspark.sql import functions as F

    from pipeline.engines.spark import served_result_type
    from pipeline.tracking.registry import CHAMPION_URI

    path = forms_dir / "c_forms.csv"  # another column order and spelling, an extra column, bad cells
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    forms = spark.read.csv(str(path), header=True, inferSchema=False)
    udfs = {
        explain: mlflow.pyfunc.spark_udf(
            spark,
            CHAMPION_URI,
            env_manager="local",
            result_type=served_result_type(SCHEMA, explain=explain),
            params={"explain": True} if explain else None,
        )
        for explain in (False, True)
    }
    both = forms.select(*(udfs[e](F.struct(*forms.columns)).alias(f"s{int(e)}") for e in (False, True)))
    both = both.toArrow()
    pyfunc = mlflow.pyfunc.load_model(CHAMPION_URI)
    for explain in (False, True):
        served = pa.Table.from_struct_array(both.column(f"s{int(explain)}").combine_chunks()).to_pandas()
        expected = pyfunc.predict(frame, params={"explain": True} if explain else None)
        assert list(served.columns) == [*SCHEMA.output_columns(explain), "reject_reason"]
        assert len(served) == len(expected) == 30
        assert served["record_id"].tolist() == expected["record_id"].tolist()
        assert served["reject_reason"].tolist() == expected["reject_reason"].tolist()
        rejected = expected["reject_reason"] != ""
        assert rejected.sum() == 2 and served.loc[rejected, list(SCHEMA.probability_columns)].isna().all().all()
        np.testing.assert_allclose(
            served.loc[~rejected, list(SCHEMA.probability_columns)].to_numpy(dtype=float),
            expected.loc[~rejected, list(SCHEMA.probability_columns)].to_numpy(dtype=float),
            atol=1e-9,
        )
        extra = list(SCHEMA.explain.columns) if explain else []
        for column in [*TEXT_COLUMNS, *extra]:
            assert served.loc[~rejected, column].tolist() == expected.loc[~rejected, column].tolist(), column
