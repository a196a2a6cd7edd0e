"""The compact scoring form (pipeline/scoring/compact.py) reproduces the fitted pipeline: the
features bit for bit, the probabilities to 1e-9 (in fact to 1e-12 as the logits are summed column
by column, and exactly through the dense features), on dense, sparse and out-of-range forms, for
each calibration it supports; and a model it cannot reproduce has none."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import SCHEMA

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.cause_model import targets
from pipeline.learning.compact_export import CompactUnsupported
from pipeline.learning.config import load_experiment
from pipeline.learning.splits import load_split
from pipeline.learning.train import build_model
from pipeline.scoring import column_tables
from pipeline.scoring.compact import FORMAT_VERSION, CompactFormError, CompactModel
from pipeline.tracking.model_logging import compact_scoring_file
from pipeline.world.generate import generate_frame
from pipeline.world.network import compile_model, default_model


@pytest.fixture(scope="module")
def forms() -> pd.DataFrame:
    """Typed forms: two populations, then the same with half the fields blank and numbers at their bounds
    (beyond the range the splines saw in training), and a few all-blank forms."""
    kb = default_knowledge_base()
    older = compile_model(kb, "older_cardiometabolic")
    dense = pd.concat([generate_frame(default_model(), 3000, 31), generate_frame(older, 1000, 32)], ignore_index=True)
    sparse = dense.copy()
    rng = np.random.default_rng(33)
    for col in SCHEMA.columns:
        if col.required:
            continue
        sparse.loc[rng.random(len(sparse)) < 0.5, col.name] = np.nan
        if col.kind in ("integer", "number"):
            extreme = rng.random(len(sparse)) < 0.1
            sparse.loc[extreme, col.name] = rng.choice([col.min, col.max], int(extreme.sum()))
    blank = dense.head(5).copy()
    for col in SCHEMA.columns:
        if not col.required:
            blank[col.name] = pd.Series([np.nan] * 5, dtype=blank[col.name].dtype)
    return pd.concat([dense, sparse, blank], ignore_index=True)


@pytest.fixture(scope="module")
def small_models() -> dict[str, object]:
    """The smoke experiment's model fitted with each calibration the compact form supports."""
    kb = default_knowledge_base()
    d = load_experiment("smoke").data
    train, _, _ = load_split(kb, "train", d.population, d.n_train, d.seed)
    cal, _, _ = load_split(kb, "calibration", d.population, d.n_calibration, d.seed)
    models = {}
    for calibration in ("temperature", "none"):
        config = dataclasses.replace(load_experiment("smoke"), calibration=calibration)
        models[calibration] = build_model(config, kb).fit(
            train, targets(train, SCHEMA), cal, targets(cal, SCHEMA), schema=SCHEMA
        )
    return models


def round_trip(model, tmp_path) -> CompactModel:
    return CompactModel.load(model.compact_form().save(tmp_path / "scoring.npz"))


def test_features_are_the_pipelines_bit_for_bit(quick_model, forms, tmp_path):
    compact = round_trip(quick_model, tmp_path)
    expected = np.asarray(quick_model.base_.named_steps["features"].transform(forms), dtype=float)
    got = compact.features(forms)
    assert got.shape == expected.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("step", [None, 1000, 37, 1])
def test_probabilities_are_the_models_in_chunks_of_any_size(quick_model, forms, tmp_path, step):
    compact = round_trip(quick_model, tmp_path)
    step = step or len(forms)
    head = forms.head(200 if step == 1 else len(forms))
    expected = np.concatenate([quick_model.predict_proba(head.iloc[i : i + step]) for i in range(0, len(head), step)])
    got = np.concatenate([compact.predict_proba(head.iloc[i : i + step]) for i in range(0, len(head), step)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # the logits' terms added in another order
    raw = np.concatenate([quick_model.predict_uncalibrated(head.iloc[i : i + step]) for i in range(0, len(head), step)])
    dense = np.concatenate(
        [compact.predict_uncalibrated_dense(head.iloc[i : i + step]) for i in range(0, len(head), step)]
    )
    np.testing.assert_array_equal(dense, raw)  # through the dense features: the same arithmetic on the same layouts


def test_number_tables_are_kept_from_chunk_to_chunk_up_to_a_bound(quick_model, forms, tmp_path, monkeypatch):
    """A number column's table rows made for one chunk serve the next (no row made twice, the same
    probabilities), and no more than CACHED_VALUES values per column are kept."""
    compact = round_trip(quick_model, tmp_path)
    head = forms.head(600)
    expected = quick_model.predict_proba(head)
    first = compact.predict_proba(head)
    tables, made = compact._tables, []
    original = tables._table
    monkeypatch.setattr(tables, "_table", lambda name, x: made.append(name) or original(name, x))
    again = compact.predict_proba(head)
    assert tables._known and made == []  # every value (and each blank) seen in the first chunk
    np.testing.assert_array_equal(again, first)
    np.testing.assert_allclose(again, expected, rtol=0, atol=1e-12)

    monkeypatch.setattr(column_tables, "CACHED_VALUES", 10)
    bounded = round_trip(quick_model, tmp_path)
    got = np.concatenate([bounded.predict_proba(head.iloc[i : i + 50]) for i in range(0, len(head), 50)])
    assert all(len(kept) <= 10 for kept in bounded._tables._known.values())
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


class _AfreshPerChunk(column_tables.ColumnTables):
    """The logits as summed before table rows were kept: each chunk's number tables made afresh (in
    batches of two or more, as `_table_at` makes them)."""

    def _table_at(self, name, x):
        return self._table(name, np.repeat(x, 2))[::2] if len(x) == 1 else self._table(name, x)


@pytest.mark.parametrize("step", [1000, 37, 1])
def test_kept_table_rows_leave_every_logit_bit_for_bit(quick_model, forms, tmp_path, step):
    compact = round_trip(quick_model, tmp_path)
    kept, afresh = column_tables.ColumnTables(compact), _AfreshPerChunk(compact)
    head = forms.head(300 if step == 1 else len(forms))
    for start in range(0, len(head), step):
        chunk = head.iloc[start : start + step]
        values = compact._values_of(chunk)
        np.testing.assert_array_equal(kept.logits(values, len(chunk)), afresh.logits(values, len(chunk)))
    assert kept._known


@pytest.mark.parametrize("calibration", ["temperature", "none"])
def test_other_calibrations_are_reproduced(small_models, forms, tmp_path, calibration):
    model = small_models[calibration]
    compact = round_trip(model, tmp_path)
    np.testing.assert_allclose(compact.predict_proba(forms), model.predict_proba(forms), rtol=0, atol=1e-9)


def test_a_model_the_form_cannot_reproduce_has_none(quick_model, forms, tmp_path):
    isotonic = copy.copy(quick_model)
    isotonic.calibration = "isotonic"
    with pytest.raises(CompactUnsupported, match="isotonic"):
        isotonic.compact_form()
    with pytest.warns(UserWarning, match="no compact scoring form"):
        assert compact_scoring_file(isotonic, forms, tmp_path / "scoring.npz") is None
    assert not (tmp_path / "scoring.npz").exists()


def test_a_form_that_differs_from_its_model_is_left_out(quick_model, forms, tmp_path):
    class Drifted:
        def compact_form(self):
            form = quick_model.compact_form()
            form.arrays["bias"] = form.arrays["bias"] + 1e-6
            return form

        def predict_proba(self, X):
            return quick_model.predict_proba(X)

    with pytest.warns(UserWarning, match="differs from the model"):
        assert compact_scoring_file(Drifted(), forms, tmp_path / "scoring.npz") is None
    assert not (tmp_path / "scoring.npz").exists()
    assert compact_scoring_file(quick_model, forms, tmp_path / "scoring.npz") == tmp_path / "scoring.npz"


def test_another_format_or_a_damaged_file_is_refused(quick_model, tmp_path):
    path = quick_model.compact_form().save(tmp_path / "scoring.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    spec = json.loads(str(arrays["spec"]))
    assert spec["version"] == FORMAT_VERSION
    np.savez(tmp_path / "future.npz", **{**arrays, "spec": np.array(json.dumps({**spec, "version": 99}))})
    with pytest.raises(CompactFormError, match="99"):
        CompactModel.load(tmp_path / "future.npz")
    # a block kind this version does not know is refused when the file is read, not while scoring
    blocks = [{**spec["blocks"][0], "kind": "cubes"}, *spec["blocks"][1:]]
    np.savez(tmp_path / "kind.npz", **{**arrays, "spec": np.array(json.dumps({**spec, "blocks": blocks}))})
    with pytest.raises(CompactFormError, match="cubes"):
        CompactModel.load(tmp_path / "kind.npz")
    (tmp_path / "damaged.npz").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CompactFormError, match="not a compact scoring file"):
        CompactModel.load(tmp_path / "damaged.npz")


def test_a_version_1_file_still_scores(small_models, forms, tmp_path):
    """Version 2 only added the `steps` kind: a file written as version 1 (no steps) reads the same."""
    path = small_models["temperature"].compact_form().save(tmp_path / "scoring.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    spec = json.loads(str(arrays["spec"]))
    assert not any(b["kind"] == "steps" for b in spec["blocks"])  # the smoke experiment has no thresholds
    np.savez(tmp_path / "v1.npz", **{**arrays, "spec": np.array(json.dumps({**spec, "version": 1}))})
    np.testing.assert_array_equal(
        CompactModel.load(tmp_path / "v1.npz").predict_proba(forms), CompactModel.load(path).predict_proba(forms)
    )


def test_yes_no_values_other_than_validation_makes_are_reproduced_too(quick_model, forms, tmp_path):
    """Products of yes/no fields are computed as an `and` only for 1.0, 0.0 and blank values."""
    odd = forms.head(50).copy()
    odd["diabetes"] = 0.5
    compact = round_trip(quick_model, tmp_path)
    expected = np.asarray(quick_model.base_.named_steps["features"].transform(odd), dtype=float)
    np.testing.assert_array_equal(compact.features(odd), expected)
    # the logits too: 0.5 is neither yes nor no, so the column is tabulated at its values and the
    # products take the general path
    np.testing.assert_allclose(compact.predict_proba(odd), quick_model.predict_proba(odd), rtol=0, atol=1e-12)
    assert not np.array_equal(compact.predict_proba(odd), compact.predict_proba(forms.head(50)))


def test_logits_are_the_same_bits_in_chunks_of_any_size(quick_model, forms, tmp_path):
    """The terms of a form's logits are added in one order whatever chunk it is in: the yes/no
    columns' groups are fixed when the model loads, not found per chunk (a 10-row chunk of sparse
    forms has all-blank labs, which once joined a group and moved the later columns' terms)."""
    compact = round_trip(quick_model, tmp_path)
    head = pd.concat([forms.iloc[3000:3300], forms.iloc[-305:]], ignore_index=True)  # dense, sparse, blank
    whole = column_tables.ColumnTables(compact).logits(compact._values_of(head), len(head))
    tables = column_tables.ColumnTables(compact)
    parts = [head.iloc[i : i + 10] for i in range(0, len(head), 10)]
    chunked = np.concatenate([tables.logits(compact._values_of(p), len(p)) for p in parts])
    np.testing.assert_array_equal(chunked, whole)
