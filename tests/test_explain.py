"""Exact attributions of the logistic family: per condition, the baseline plus every field's
attribution is the calibrated logit; blank fields are never cited; the direction is right."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SCHEMA
from scipy.special import expit

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.config import load_experiment
from pipeline.learning.families import linear_weights
from pipeline.learning.splits import load_split
from pipeline.scoring.explain import reasons_column


@pytest.fixture(scope="module")
def fitted(quick_model):
    kb = default_knowledge_base()
    d = load_experiment("quick").data
    val, _, _ = load_split(kb, "validation", d.population, d.n_validation, d.seed)
    return quick_model, val.head(400)


def test_baseline_plus_attributions_is_the_calibrated_logit(fitted):
    model, rows = fitted
    attributions, baseline = model.attributions(rows)
    n_cond = len(SCHEMA.conditions)
    assert attributions.shape == (len(rows), n_cond, len(SCHEMA.column_names))
    total = baseline + attributions.sum(axis=2)
    # on the logit scale, from the model's own weights (a logit recovered from a probability near
    # 0 or 1 loses digits: at a logit of 21, 1e-7 of them)
    weights, bias = linear_weights(model.base_.named_steps["classifier"])
    z = (np.asarray(model.base_.named_steps["features"].transform(rows), dtype=float) @ weights + bias)[:, :n_cond]
    expected = model.calibrator_.intercept_[:n_cond] + model.calibrator_.slope_[:n_cond] * z
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-8)
    # and on the probability scale, through the calibrator itself
    calibrated = model.calibrator_.transform(model.predict_uncalibrated(rows))[:, :n_cond]
    np.testing.assert_allclose(expit(total), calibrated, rtol=0, atol=1e-12)
    assert np.abs(total).max() > 5  # the check covers confident rows too
    # and the knowledge base's posterior features, split by their per-field parts
    assert "posterior" in model.base_.named_steps["features"].named_transformers_


def test_posterior_parts_made_a_block_at_a_time_are_the_same(fitted, monkeypatch):
    import pipeline.learning.explain as explain

    model, rows = fitted
    whole, baseline = model.attributions(rows)
    monkeypatch.setattr(explain, "PART_ROWS", 64)
    blocks, same_baseline = model.attributions(rows)
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(same_baseline, baseline)


def test_a_strong_sign_is_cited_up_and_a_blank_never(fitted):
    model, rows = fitted
    form = rows.iloc[[0]].copy()
    form["pain_on_walking_relieved_by_rest"] = 1.0
    form["bmi"] = np.nan
    attributions, _ = model.attributions(form)
    pad = SCHEMA.conditions.index("peripheral_artery_disease")
    field = SCHEMA.column_names.index("pain_on_walking_relieved_by_rest")
    assert attributions[0, pad, field] > 0
    answered = form[list(SCHEMA.column_names)].notna().to_numpy()
    text = reasons_column(attributions, answered, [["peripheral_artery_disease"]], list(SCHEMA.conditions),
                          list(SCHEMA.column_names))[0]  # fmt: skip
    assert text.startswith("peripheral_artery_disease: +") and "+pain_on_walking_relieved_by_rest" in text
    assert "bmi" not in text


def test_reasons_format_by_hand():
    attributions = np.zeros((1, 2, 4))
    attributions[0, 0] = [0.5, -0.2, 2.0, -1.0]
    attributions[0, 1] = [0.1, 0.0, 0.0, 0.0]
    answered = np.array([[True, True, True, False]])
    text = reasons_column(attributions, answered, [["a", "b"]], ["a", "b"], ["f0", "f1", "f2", "f3"])
    assert text == ["a: +f2, +f0, -f1 | b: +f0"]
