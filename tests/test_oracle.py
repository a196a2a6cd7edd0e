"""The oracle: exact against brute force, calibrated on its own data, moved the right way."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from reference import brute_force_posterior

import pipeline.world.oracle as oracle
from pipeline.learning.metrics import expected_calibration_error
from pipeline.world.evidence import parent_codes
from pipeline.world.generate import generate_frame
from pipeline.world.oracle import ERROR_COLUMN, posterior_probabilities


def probs(post: pd.DataFrame) -> np.ndarray:
    return post.drop(columns=[ERROR_COLUMN]).to_numpy()


def test_tiny_kb_hand_computed(tiny_model):
    """All parents known and at reference (so priors are the base rates), fatigue yes, pain no."""
    row = generate_frame(tiny_model, 1, seed=0)
    row.loc[:, ["smoker", "diabetes", "statin"]] = 0.0
    row.loc[:, ["age", "bmi", "fatigue", "pain"]] = [50.0, 22.0, 1.0, 0.0]
    row.loc[:, ["severity", "marker", "symptom_duration_weeks"]] = np.nan
    prior = {"a": 0.2, "b": 0.1, "c": 0.05}
    joint = {}
    for a, b, c in itertools.product((0, 1), repeat=3):
        p_s = np.prod([prior[k] if s else 1 - prior[k] for k, s in zip("abc", (a, b, c), strict=True)])
        fatigue = 1 - 0.9 * 0.4**a * 0.5**b  # leak 0.1; links a 0.6, b 0.5
        no_pain = 0.95 * 0.3**b * 0.6**c  # leak 0.05; links b 0.7, c 0.4
        joint[(a, b, c)] = p_s * fatigue * no_pain
    total = sum(joint.values())
    expected = [sum(v for s, v in joint.items() if s[i]) / total for i in range(3)]
    expected_alpha = sum(v for s, v in joint.items() if s[0] or s[1]) / total
    post = posterior_probabilities(tiny_model, row)
    np.testing.assert_allclose(post[["p_cond_a", "p_cond_b", "p_cond_c"]].iloc[0], expected, rtol=1e-12)
    assert post["p_cause_alpha"].iloc[0] == pytest.approx(expected_alpha, rel=1e-12)
    assert post["p_cause_beta"].iloc[0] == pytest.approx(expected[2], rel=1e-12)


def test_tiny_kb_equals_brute_force(tiny_model):
    frame = generate_frame(tiny_model, 300, seed=4)
    post = posterior_probabilities(tiny_model, frame)
    reference = np.array([brute_force_posterior(tiny_model, frame.iloc[[i]]) for i in range(len(frame))])
    np.testing.assert_allclose(probs(post), reference, atol=1e-12)


@pytest.fixture(scope="module")
def sample(model):
    frame = generate_frame(model, 3000, seed=5)
    return frame, posterior_probabilities(model, frame)


def test_real_kb_equals_brute_force_on_a_few_rows(model, sample, monkeypatch):
    """Rows with few positive findings and one with the loosest error bound (extended precision
    or sign-free enumeration); each must agree within its own reported bound, with the blank
    parents enumerated (the default here) and with them eliminated."""
    frame, post = sample
    blank_parents = (parent_codes(model, frame) < 0).sum(1)
    positives = (frame[[f.field for f in model.findings if f.field in frame]] == 1).sum(axis=1).to_numpy()
    simple = np.flatnonzero((blank_parents == 0) & (positives <= 3))[:2]
    bounds = post[ERROR_COLUMN].to_numpy()
    loosest = np.flatnonzero(blank_parents <= 1)[np.argmax(bounds[blank_parents <= 1])]
    rows = [*simple, loosest]
    monkeypatch.setattr(oracle, "ENUMERATE_AT_MOST", 0)
    eliminated = posterior_probabilities(model, frame.iloc[rows])
    for j, i in enumerate(rows):
        reference = brute_force_posterior(model, frame.iloc[[i]])
        diff = np.abs(probs(post)[i] - reference).max()
        assert diff <= max(bounds[i], 1e-12), (i, diff, bounds[i])
        bound = eliminated[ERROR_COLUMN].iloc[j]
        diff = np.abs(probs(eliminated)[j] - reference).max()
        assert diff <= max(bound, 1e-12), (i, diff, bound)
    assert bounds[loosest] > 1e-9  # the fallback path was really exercised


def test_error_bounds_are_small(sample):
    _, post = sample
    assert (post[ERROR_COLUMN] <= 1e-5).all()
    assert post[ERROR_COLUMN].median() < 1e-9


def test_causes_are_at_least_their_conditions(model, sample):
    _, post = sample
    for cause in model.kb.schema.causes:
        conds = post[[f"p_{c}" for c in cause.conditions]].to_numpy()
        p_cause = post[f"p_cause_{cause.name}"].to_numpy()
        assert (p_cause >= conds.max(1) - 1e-12).all()
        assert (p_cause <= np.minimum(conds.sum(1), 1) + 1e-12).all()
    values = probs(post)
    assert ((values >= 0) & (values <= 1)).all()


def test_blank_is_marginalised_between_yes_and_no(model, sample):
    frame, _ = sample
    rows = frame.iloc[:200].copy()
    variants = {}
    for value in (1.0, 0.0, np.nan):
        v = rows.copy()
        v["diabetes"] = value
        variants[value] = posterior_probabilities(model, v)["p_peripheral_neuropathy"].to_numpy()
    lo = np.minimum(variants[1.0], variants[0.0])
    hi = np.maximum(variants[1.0], variants[0.0])
    assert ((variants[np.nan] >= lo - 1e-12) & (variants[np.nan] <= hi + 1e-12)).all()
    assert (variants[1.0] > variants[0.0]).all()


def test_every_link_moves_its_condition_up(model, sample):
    """Blank -> present for every finding link, normal -> abnormal value for every lab link."""
    frame, _ = sample
    base = frame.iloc[[0]].copy()
    schema = model.kb.schema
    for f in model.findings:
        col = schema.column(f.field)
        if col.kind == "category":
            present = f.present
        elif col.kind == "integer":
            present = float(f.present_range[0])
        else:
            present = 1.0
        before, after = base.copy(), base.copy()
        before.loc[:, f.field] = np.nan
        after.loc[:, f.field] = present
        both = posterior_probabilities(model, pd.concat([before, after]))
        for link in f.links:
            p = both[f"p_{link.condition}"].to_numpy()
            assert p[1] > p[0], (f.name, link.condition)
    for lab in model.labs:
        normal, abnormal = base.copy(), base.copy()
        for frame_, dist in ((normal, lab.normal), (abnormal, lab.abnormal)):
            value = np.exp(dist.mean) if lab.scale == "log" else dist.mean
            frame_[lab.name] = round(value / lab.step) * lab.step
        both = posterior_probabilities(model, pd.concat([normal, abnormal]))
        for link in lab.links:
            p = both[f"p_{link.condition}"].to_numpy()
            assert p[1] > p[0], (lab.name, link.condition)


@pytest.mark.slow
def test_oracle_is_calibrated_on_its_own_data(model):
    frame = generate_frame(model, 100_000, seed=21)
    post = posterior_probabilities(model, frame)
    checked = 0
    for name in model.conditions:
        y = frame[f"label_{name}"].to_numpy()
        if y.sum() < 1000:
            continue
        ece = expected_calibration_error(y, post[f"p_{name}"].to_numpy(), n_bins=15)
        assert ece <= 0.005, (name, ece)
        checked += 1
    assert checked >= 8
