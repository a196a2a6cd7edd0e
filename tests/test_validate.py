"""Cell validation as docs/intake-form.md says, through the one intake path: bad cells reject
their row only, accepted spellings are normalised, repeated and over-long ids are rejected,
missing and extra columns give warnings. No model is needed: these check the typed rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SCHEMA, base_row, write_intake

from pipeline.intake.stream import iter_validated


def validated(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], int]:
    """(typed rows, reject lines, warnings, rows read) of a whole file."""
    stream = iter_validated(path, SCHEMA)
    chunks = list(stream)
    typed = pd.concat([c.typed for c in chunks])
    rejects = pd.concat([c.rejects for c in chunks], ignore_index=True)
    return typed, rejects, stream.warnings, sum(c.rows_read for c in chunks)


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
def test_bad_cell_rejects_its_row_only(tmp_path, field, value, reason):
    rows = [base_row("ok-1"), base_row("bad", **{field: value}), base_row("ok-2")]
    typed, rejects, _, read = validated(write_intake(tmp_path / "in.csv", rows))
    assert read == 3
    assert typed["record_id"].tolist() == ["ok-1", "ok-2"] and typed.index.tolist() == [1, 3]
    assert len(rejects) == 1
    line = rejects.iloc[0]
    assert (line["row"], line["record_id"], line["field"], line["value"]) == (2, "bad", field, value)
    assert reason in line["reason"]


def test_accepted_spellings_are_normalised_not_rejected(tmp_path):
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
    typed, rejects, _, _ = validated(write_intake(tmp_path / "in.csv", rows))
    assert rejects.empty and len(typed) == len(rows)
    form = typed.set_index("record_id")

    def same(a: str, b: str) -> None:
        pd.testing.assert_series_equal(form.loc[a], form.loc[b], check_names=False, obj=f"{a} vs {b}")

    for rid in [f"yes-{i}" for i in range(len(yes))] + ["cat", "num", "plus"]:
        same(rid, "canon-yes")
    for rid in [f"no-{i}" for i in range(len(no))]:
        same(rid, "canon-no")
    for rid in [f"blank-{i}" for i in range(len(blank))]:
        same(rid, "canon-blank")
    assert form.loc["canon-yes", "leg_swelling"] == 1.0 and form.loc["canon-no", "leg_swelling"] == 0.0
    assert np.isnan(form.loc["canon-blank", "leg_swelling"])


def test_repeated_id_rejects_the_later_rows(tmp_path):
    rows = [base_row("same", age="40"), base_row("other"), base_row("same", age="70"), base_row("same", age="71")]
    typed, rejects, _, _ = validated(write_intake(tmp_path / "in.csv", rows))
    assert typed["record_id"].tolist() == ["same", "other"] and typed["age"].tolist() == [40.0, 50.0]
    assert rejects[["row", "record_id", "field"]].values.tolist() == [
        [3, "same", "record_id"],
        [4, "same", "record_id"],
    ]
    assert rejects["reason"].str.contains("first used at row 1").all()


def test_repeated_id_across_chunks_is_rejected(tmp_path):
    rows = [base_row(f"r{i}") for i in range(400)] + [base_row("r7")]
    stream = iter_validated(write_intake(tmp_path / "in.csv", rows), SCHEMA, block_bytes=4096)
    chunks = list(stream)
    assert len(chunks) > 3  # the repeat is far from its first use
    rejects = pd.concat([c.rejects for c in chunks])
    assert rejects[["row", "record_id"]].values.tolist() == [[401, "r7"]]
    assert "first used at row 8" in rejects["reason"].iloc[0]


def test_missing_optional_and_extra_columns_give_warnings(tmp_path):
    columns = [c for c in SCHEMA.intake_columns if c not in ("bmi", "tremor")] + ["favourite_colour"]
    rows = [base_row("w1", favourite_colour="blue", sex="male"), base_row("w2", favourite_colour="=red")]
    typed, rejects, warnings, _ = validated(write_intake(tmp_path / "in.csv", rows, columns))
    assert typed["record_id"].tolist() == ["w1", "w2"] and rejects.empty
    missing = [w for w in warnings if "missing optional" in w]
    extra = [w for w in warnings if "extra column" in w]
    assert len(missing) == 1 and "bmi" in missing[0] and "tremor" in missing[0]
    assert "age" not in missing[0] and "sex" not in missing[0]
    assert len(extra) == 1 and "favourite_colour" in extra[0]
    # a missing column reads as all-blank, an extra one is ignored, and column order does not matter
    full, _, _, _ = validated(write_intake(tmp_path / "full.csv", [base_row("w1", sex="male"), base_row("w2")]))
    shuffled, _, shuffled_warnings, _ = validated(write_intake(tmp_path / "shuffled.csv", rows, columns[::-1]))
    assert shuffled_warnings == warnings
    pd.testing.assert_frame_equal(typed, full)
    pd.testing.assert_frame_equal(typed, shuffled)


def test_expected_extra_columns_are_not_warned_about(tmp_path):
    columns = [*SCHEMA.intake_columns, *SCHEMA.label_columns]
    path = write_intake(tmp_path / "in.csv", [base_row("a")], columns)
    assert any("extra column" in w for w in iter_validated(path, SCHEMA).warnings)
    assert iter_validated(path, SCHEMA, expected_extra=SCHEMA.label_columns).warnings == []


def test_record_id_length_is_counted_in_characters(tmp_path):
    rows = [base_row("東" * 64), base_row("京" * 65), base_row("a" * 64), base_row("b" * 65)]
    typed, rejects, _, _ = validated(write_intake(tmp_path / "in.csv", rows))
    assert typed["record_id"].tolist() == ["東" * 64, "a" * 64]
    assert rejects[["row", "field"]].values.tolist() == [[2, "record_id"], [4, "record_id"]]
    assert rejects["reason"].str.contains("longer than 64").all()


def test_repeated_ids_are_exact_even_when_every_hash_collides(tmp_path, monkeypatch):
    """Ids are looked up by a 64-bit hash and confirmed on the ids themselves: with every hash the
    same, only the true repeats are rejected, each naming its first row."""
    import pipeline.intake.seen_ids as seen_ids

    ids = [f"p{i % 700}" if i % 3 else f"q{i}" for i in range(2000)]
    path = write_intake(tmp_path / "in.csv", [base_row(rid) for rid in ids])

    def validated_in_chunks() -> tuple[pd.DataFrame, pd.DataFrame]:
        chunks = list(iter_validated(path, SCHEMA, block_bytes=4096))
        assert len(chunks) > 10  # repeats far from their first use
        return pd.concat([c.typed for c in chunks]), pd.concat([c.rejects for c in chunks], ignore_index=True)

    expected = validated_in_chunks()
    monkeypatch.setattr(seen_ids, "_hashes", lambda keys: np.zeros(len(keys), dtype=np.int64))
    colliding = validated_in_chunks()
    pd.testing.assert_frame_equal(colliding[0], expected[0])
    pd.testing.assert_frame_equal(colliding[1], expected[1])
    first: dict[str, int] = {}
    repeats = []
    for row, rid in enumerate(ids, start=1):
        if rid in first:
            repeats.append((row, f"repeated record_id (first used at row {first[rid]})"))
        first.setdefault(rid, row)
    rejects = expected[1]
    assert list(zip(rejects["row"].tolist(), rejects["reason"].tolist(), strict=True)) == repeats


def test_what_is_worked_out_per_schema_stays_bounded_and_right(tmp_path, monkeypatch):
    """The empty rejects frame, the category dtypes and the spellings are made once per schema
    object; a process that meets many (a Spark worker unpickles one per task) keeps a bounded
    number, and each new schema object validates as the first did."""
    import copy

    import pipeline.intake.validate as validate

    monkeypatch.setattr(validate, "CACHE_ENTRIES", 3)
    path = write_intake(tmp_path / "in.csv", [base_row(f"r{i}") for i in range(20)] + [base_row("r0")])
    expected = next(iter(iter_validated(path, SCHEMA)))
    for _ in range(4):
        schema = copy.copy(SCHEMA)  # an equal schema, another object
        chunk = next(iter(iter_validated(path, schema)))
        pd.testing.assert_frame_equal(chunk.typed, expected.typed)
        pd.testing.assert_frame_equal(chunk.rejects, expected.rejects)
        assert validate.empty_rejects(schema).empty and list(validate.empty_rejects(schema)) == list(
            schema.rejects_columns
        )
        for cache in (validate._EMPTY_REJECTS, validate._CATEGORY_DTYPES, validate._SPELLINGS):
            assert len(cache) <= 3
