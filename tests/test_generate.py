"""The generator: determinism, the intake format, and agreement with the knowledge base."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from reference_generator import write_reference_dataset
from scipy.special import expit
from threadpoolctl import threadpool_info

from pipeline.contract.loader import default_knowledge_base
from pipeline.intake.frames import parquet_metadata, parquet_table_from_columns, read_parquet_dataset
from pipeline.intake.stream import validate_frame
from pipeline.world.evidence import finding_states, parent_codes
from pipeline.world.generate import CHUNK_ROWS, generate_frame, parquet_table, write_dataset
from pipeline.world.network import compile_model, default_model
from pipeline.world.sampling import raw_columns, sample_cells


@pytest.fixture(scope="module")
def big(model):
    return generate_frame(model, 300_000, seed=11)


def test_same_seed_same_bytes_and_different_seed_differs(model, tmp_path):
    a, b, c = (tmp_path / f"{x}.csv" for x in "abc")
    write_dataset(model, 3000, 5, a, "csv")
    write_dataset(model, 3000, 5, b, "csv")
    write_dataset(model, 3000, 6, c, "csv")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_parquet_is_deterministic_and_carries_seed_and_kb_hash(model, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_dataset(model, 2500, 9, a, "parquet")
    write_dataset(model, 2500, 9, b, "parquet")
    assert a.read_bytes() == b.read_bytes()
    meta = parquet_metadata(a)
    assert meta["leg_fatigue.seed"] == "9"
    assert meta["leg_fatigue.kb_sha256"] == model.kb.sha256
    assert meta["leg_fatigue.population"] == "general"


@pytest.mark.parametrize(
    ("fmt", "population", "n"),
    [
        ("csv", "general", CHUNK_ROWS + 1234),
        ("parquet", "general", CHUNK_ROWS + 1234),
        ("csv", "older_cardiometabolic", 999),
    ],
)
def test_same_bytes_as_the_generator_before_it_was_made_fast(fmt, population, n, tmp_path):
    """tests/reference_generator.py is the sampler and writers of main before issue 11; same seed, same file."""
    model = default_model(population)
    ours = write_dataset(model, n, 17, tmp_path / f"ours.{fmt}", fmt)
    theirs = write_reference_dataset(model, n, 17, tmp_path / f"theirs.{fmt}", fmt)
    assert ours.read_bytes() == theirs.read_bytes()


def test_parquet_table_from_cells_is_the_frames_parquet_table(model):
    schema = model.kb.schema
    cells = sample_cells(model, 3000, np.random.default_rng(6))
    want = parquet_table_from_columns(raw_columns(cells, schema), schema, with_labels=True)
    assert parquet_table(cells, schema).equals(want)


def test_blas_threads_are_restored_after_generating(model):
    before = [pool["num_threads"] for pool in threadpool_info()]
    generate_frame(model, 10, seed=1)
    assert [pool["num_threads"] for pool in threadpool_info()] == before


def test_full_chunks_are_shared_across_n(model):
    small = generate_frame(model, CHUNK_ROWS, seed=3)
    large = generate_frame(model, CHUNK_ROWS + 500, seed=3)
    pd.testing.assert_frame_equal(small, large.iloc[:CHUNK_ROWS])


def test_csv_is_the_intake_format_and_passes_the_validator(model, tmp_path):
    path = tmp_path / "d.csv"
    write_dataset(model, 5000, 2, path, "csv")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    labels = [c for c in raw.columns if c.startswith("label_")]
    result = validate_frame(raw.drop(columns=labels), model.kb.schema)
    assert len(result.rejects) == 0, result.rejects.head()
    assert len(result.typed) == 5000
    assert set(raw["smoking"]) <= {"never", "former", "current", ""}
    assert set(raw["diabetes"]) <= {"yes", "no", ""}
    frame = generate_frame(model, 5000, seed=2)
    typed = result.typed.reset_index(drop=True)
    for col in ("age", "bmi", "ferritin_ng_ml", "severity"):
        np.testing.assert_array_equal(typed[col].to_numpy(), frame[col].to_numpy())
    for col in ("sex", "onset", "diet_quality"):
        np.testing.assert_array_equal(typed[col].cat.codes.to_numpy(), frame[col].cat.codes.to_numpy())


def test_parquet_round_trip_equals_the_frame(model, tmp_path):
    path = tmp_path / "d.parquet"
    write_dataset(model, 4000, 8, path, "parquet")
    pd.testing.assert_frame_equal(read_parquet_dataset(path, model.kb.schema), generate_frame(model, 4000, 8))


def test_values_within_schema_bounds(big, model):
    for col in model.kb.schema.columns:
        if col.kind in ("integer", "number"):
            v = big[col.name].dropna()
            assert v.between(col.min, col.max).all(), col.name
            if col.kind == "integer":
                assert (v == v.round()).all(), col.name


def test_blank_rates_match_the_knowledge_base(big, model):
    n = len(big)
    for col in model.kb.schema.columns:
        rate = model.kb.blank_rates[col.name]
        observed = big[col.name].isna().mean()
        assert abs(observed - rate) < 4 * np.sqrt(rate * (1 - rate) / n) + 1e-9, col.name


def test_condition_rates_match_their_logistic_priors(big, model):
    """Where every parent is on the form, label rates match the KB's logistic model."""
    codes = parent_codes(model, big)
    complete = (codes >= 0).all(axis=1)
    x = model.features(big["age"].to_numpy()[complete], codes[complete])
    pi = expit(model.condition_logits(x))
    for j, name in enumerate(model.conditions):
        y = big[f"label_{name}"].to_numpy()[complete]
        expected, var = pi[:, j].sum(), (pi[:, j] * (1 - pi[:, j])).sum()
        assert abs(y.sum() - expected) < 4.5 * np.sqrt(var) + 1, name
        high = pi[:, j] > np.quantile(pi[:, j], 0.9)  # the effects, not only the mean
        assert abs(y[high].sum() - pi[high, j].sum()) < 4.5 * np.sqrt(pi[high, j].sum()) + 1, name


def test_risk_factor_dependencies(big):
    def rate(frame, col):
        return frame[col].mean()

    assert rate(big[big.high_cholesterol == 1], "statin") > 3 * rate(big[big.high_cholesterol == 0], "statin")
    assert rate(big[big.age >= 65], "diabetes") > rate(big[big.age < 45], "diabetes")
    assert rate(big[big.hypertension == 1], "diuretic") > 3 * rate(big[big.hypertension == 0], "diuretic")
    assert rate(big[big.ra_diagnosis == 1], "corticosteroid_long_term") > 3 * rate(
        big[big.ra_diagnosis == 0], "corticosteroid_long_term"
    )


def test_noisy_or_link_strengths(big, model):
    """With exactly one condition present, P(finding) = 1 - (1 - leak)(1 - p); with none, the leak."""
    labels = big[[f"label_{c}" for c in model.conditions]].to_numpy()
    states = finding_states(model, big)
    none = labels.sum(1) == 0
    for j, f in enumerate(model.findings):
        seen = none & ~np.isnan(states[:, j])
        leak, n = f.leak, seen.sum()
        assert abs(states[seen, j].mean() - leak) < 4.5 * np.sqrt(leak * (1 - leak) / n), f.name
        for link in f.links:
            c = model.conditions.index(link.condition)
            only = (labels.sum(1) == 1) & (labels[:, c] == 1) & ~np.isnan(states[:, j])
            if only.sum() < 400:
                continue
            p = 1 - (1 - leak) * (1 - link.p)
            assert abs(states[only, j].mean() - p) < 4.5 * np.sqrt(p * (1 - p) / only.sum()), (f.name, c)


def test_labs_shift_with_their_conditions(big):
    iron = big[big.label_iron_deficiency_anemia == 1].ferritin_ng_ml.dropna()
    other = big[big.label_iron_deficiency_anemia == 0].ferritin_ng_ml.dropna()
    assert np.log(iron.clip(lower=1)).mean() < np.log(other.clip(lower=1)).mean() - 1.5
    pad = big[big.label_peripheral_artery_disease == 1].abi.dropna()
    assert pad.mean() < big[big.label_peripheral_artery_disease == 0].abi.dropna().mean() - 0.25
    assert big[big.diabetes == 1].hba1c_percent.mean() > big[big.diabetes == 0].hba1c_percent.mean() + 1.5


def test_cardiometabolic_population_shifts_prevalence(model):
    general = generate_frame(model, 40_000, seed=1)
    older = generate_frame(compile_model(default_knowledge_base(), "older_cardiometabolic"), 40_000, seed=1)
    assert older.age.mean() > general.age.mean() + 10
    for name in ("diabetes", "hypertension"):
        assert older[name].mean() > 1.5 * general[name].mean()
    assert older.label_peripheral_artery_disease.mean() > 1.5 * general.label_peripheral_artery_disease.mean()
