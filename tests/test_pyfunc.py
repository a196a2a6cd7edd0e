"""The served contract in-process: the pyfunc returns, for every input row in order and with the
input's index, the scores-file columns plus `reject_reason`, equal to the batch scorer's output,
whatever pandas dtypes the frame has; nulls are None, never NaN."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from helpers import SCHEMA, read_rows
from mlflow.exceptions import MlflowException

from pipeline.intake.frames import to_csv_table
from pipeline.scoring.score import score_file
from pipeline.tracking.registry import CHAMPION_URI
from pipeline.world.examples import SAMPLE_PATH
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

SERVED = [*SCHEMA.scores_columns, "reject_reason"]


@pytest.fixture(scope="module")
def pyfunc(store):
    return mlflow.pyfunc.load_model(CHAMPION_URI)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> pd.DataFrame:
    """Valid synthetic forms as `mlflow models predict` reads a CSV: pandas' own types."""
    path = tmp_path_factory.mktemp("plain") / "forms.csv"
    pacsv.write_csv(to_csv_table(generate_frame(default_model(), 40, 5), SCHEMA), path)
    return pd.read_csv(path)


def strict_json(records: list[dict]) -> list[dict]:
    """Round trip through a JSON encoder that refuses NaN and infinities."""
    return json.loads(json.dumps(records, allow_nan=False))


def test_served_rows_equal_the_batch_scorer(store, pyfunc, tmp_path):
    frame = pd.read_csv(SAMPLE_PATH, dtype=str, keep_default_na=False, on_bad_lines="skip")
    out = pyfunc.predict(frame)
    assert list(out.columns) == SERVED and len(out) == len(frame)
    path = tmp_path / "sample.csv"
    frame.to_csv(path, index=False)
    score_file(path, tmp_path / "scores.csv", store.loaded, store.kb)
    scores = {r["record_id"]: r for r in read_rows(tmp_path / "scores.csv")[1]}
    rejects = read_rows(tmp_path / "scores.rejects.csv")[1]
    rejected_rows = {int(r["row"]) for r in rejects}
    assert rejected_rows, "the example has bad rows"
    for position, row in enumerate(out.to_dict(orient="records"), start=1):
        if position in rejected_rows:
            assert row["reject_reason"] and all(row[c] is None for c in SCHEMA.probability_columns)
            fields = {r["field"] for r in rejects if int(r["row"]) == position}
            assert all(f"{f}:" in row["reject_reason"] for f in fields), (row["reject_reason"], fields)
            continue
        expected = scores[row["record_id"]]
        assert row["reject_reason"] == ""
        for column in SCHEMA.scores_columns:
            if column in SCHEMA.probability_columns:
                assert row[column] == pytest.approx(float(expected[column]), abs=0), column
            else:
                assert str(row[column]) == expected[column], column


def test_output_is_strict_json_and_keeps_the_input_index(pyfunc, plain):
    subset = plain.iloc[[9, 2, 5]]  # a filtered, reordered frame: the index says which row is which
    out = pyfunc.predict(subset)
    assert list(out.index) == [9, 2, 5]
    assert list(out["record_id"]) == list(subset["record_id"].astype(str))
    strict_json(out.to_dict(orient="records"))


def test_a_bad_row_comes_back_with_its_reason_and_null_scores(pyfunc, plain):
    bad = plain.head(3).copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[1, "age"] = 7
    records = strict_json(pyfunc.predict(bad).to_dict(orient="records"))
    assert "age: below the minimum 18" in records[1]["reject_reason"]
    assert records[1]["triage"] is None and records[1][SCHEMA.probability_columns[0]] is None
    assert records[0]["reject_reason"] == "" and records[0]["triage"] in SCHEMA.triage_levels


def test_record_id_is_optional(pyfunc, plain):
    out = pyfunc.predict(plain.head(3).drop(columns=["record_id"]))
    assert list(out["record_id"]) == ["row-1", "row-2", "row-3"]
    assert (out["reject_reason"] == "").all()


def test_headers_spelled_as_clinics_export_them_are_read(pyfunc, plain):
    """`Record ID`, `AGE` name the contract's columns: the id is taken from it, not made up."""
    out = pyfunc.predict(plain.head(3).rename(columns={"record_id": "Record ID", "age": " AGE"}))
    assert list(out["record_id"]) == list(plain.head(3)["record_id"].astype(str))
    pd.testing.assert_frame_equal(out, pyfunc.predict(plain.head(3)))


@pytest.mark.parametrize("kind", ["numpy_nullable", "pyarrow", "convert_dtypes"])
def test_nullable_and_arrow_backed_frames_score_like_plain_ones(pyfunc, plain, kind):
    if kind == "convert_dtypes":
        frame = plain.convert_dtypes()
    else:
        frame = pd.read_csv(pd.io.common.StringIO(plain.to_csv(index=False)), dtype_backend=kind)
    expected, got = pyfunc.predict(plain), pyfunc.predict(frame)
    assert (got["reject_reason"] == "").all(), got["reject_reason"].tolist()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_a_frame_without_a_required_column_is_refused(pyfunc, plain):
    with pytest.raises(MlflowException, match="missing required column"):
        pyfunc.predict(plain.drop(columns=["age"]))
