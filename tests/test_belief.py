"""The knowledge base's approximate posterior (loopy belief propagation, a model feature): exact
where the factor graph is a tree, close to the oracle elsewhere, and split exactly into fields."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.world import network
from pipeline.world.belief import (
    _Graph,
    knowledge_posterior,
    posterior_logits,
    posterior_parts,
)
from pipeline.world.evidence import parent_codes
from pipeline.world.generate import generate_frame
from pipeline.world.oracle import posterior_probabilities


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def sample(model):
    frame = generate_frame(model, 3000, seed=11)
    return frame, posterior_probabilities(model, frame)


def _multi_parent_factors(model, frame) -> np.ndarray:
    """Per row: how many of its factors link two conditions or more (loops need two)."""
    graph = _Graph(model, frame)
    rows = graph.slot // model.n_conditions
    pairs = np.unique(np.column_stack([rows, graph.pair]), axis=0)
    return np.bincount(pairs[:, 0], minlength=len(frame))


def test_a_tree_with_every_parent_answered_is_the_oracle(model, sample):
    """One factor over several conditions and every person field and risk factor answered: the
    graph is a tree and the prior exact, so the posterior is the oracle's (here the blank-parent
    expectations and the loops, the two approximations, are both absent)."""
    frame, oracle = sample
    answered = (parent_codes(model, frame) >= 0).all(axis=1)
    tree = _multi_parent_factors(model, frame) <= 1
    rows = np.flatnonzero(answered & tree)
    assert len(rows) >= 50, len(rows)
    p = _expit(posterior_logits(model, frame.iloc[rows]))
    expected = oracle[[f"p_{c}" for c in model.conditions]].to_numpy()[rows]
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-12)


def test_close_to_the_oracle_where_it_approximates(model, sample):
    """Loops and blank parents: within a few percent of the oracle's log-loss on generated rows
    (0.4% on the 50k validation rows), and far better than ignoring the explaining away."""
    frame, oracle = sample
    y = frame[[f"label_{c}" for c in model.conditions]].to_numpy(dtype=float)

    def log_loss(p):
        p = np.clip(p, 1e-15, 1 - 1e-15)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()

    best = log_loss(oracle[[f"p_{c}" for c in model.conditions]].to_numpy())
    assert log_loss(_expit(posterior_logits(model, frame))) < 1.02 * best
    assert log_loss(_expit(posterior_logits(model, frame, iterations=0))) > 1.1 * best


def test_parts_add_up_to_the_logits(model, sample):
    frame, _ = sample
    fields = list(model.kb.schema.column_names)
    parts, constant = posterior_parts(model, frame.iloc[:500], fields)
    np.testing.assert_allclose(parts.sum(axis=2) + constant, posterior_logits(model, frame.iloc[:500]), atol=1e-10)
    blank = frame.iloc[:500][fields].isna().to_numpy()
    answered_parts = np.abs(parts).sum(axis=1) > 0
    # a blank finding or lab sends no message and no negative: only a blank parent's expectation counts
    findings = {f.field for f in model.findings} | {lab.name for lab in model.labs}
    parents = {v.name for v in model.parent_vars}
    for j, name in enumerate(fields):
        if name in findings and name not in parents:
            assert not (answered_parts[:, j] & blank[:, j]).any(), name


def test_any_number_of_positive_findings(model, sample):
    """The exact oracle refuses rows beyond its expansion limit; the approximation does not."""
    frame, _ = sample
    row = frame.iloc[[0]].copy()
    for finding in model.findings:
        column = model.kb.schema.column(finding.field)
        if column.kind == "yes_no":
            row[finding.field] = 1.0
    logits = posterior_logits(model, row)
    assert logits.shape == (1, model.n_conditions)
    assert np.isfinite(logits).all()


def test_an_empty_frame(model, sample):
    frame, _ = sample
    assert posterior_logits(model, frame.iloc[:0]).shape == (0, model.n_conditions)


def test_another_knowledge_base_is_refused(model, sample):
    frame, _ = sample
    with pytest.raises(ValueError, match="retrain"):
        knowledge_posterior(frame.iloc[:5], "general", "0" * 64, 3)
    same = knowledge_posterior(frame.iloc[:5], "general", model.kb.sha256, 3)
    np.testing.assert_array_equal(same, posterior_logits(model, frame.iloc[:5]))


@pytest.mark.parametrize("bound", [16384, 50])
def test_kept_lab_likelihoods_are_the_computed_ones(bound, monkeypatch):
    """`lab_likelihoods` keeps each lab's values from call to call (up to a bound): what it returns
    is `lab_bin_probability` at those values, bit for bit, whatever was kept before."""
    monkeypatch.setattr(network, "KNOWN_LAB_VALUES", bound)
    monkeypatch.setattr(network, "_KNOWN_LABS", {})
    model = network.default_model()
    frame = generate_frame(model, 4000, 11)
    for lab in model.labs:
        col = model.kb.schema.column(lab.name)
        values = frame[lab.name].dropna().unique().astype(float)
        for part in (values[:40], values[20:90], values[::-1], values[:1]):
            abnormal, normal = network.lab_likelihoods(lab, part, col.min, col.max)
            np.testing.assert_array_equal(abnormal, network.lab_bin_probability(lab, part, True, col.min, col.max))
            np.testing.assert_array_equal(normal, network.lab_bin_probability(lab, part, False, col.min, col.max))
    kept = [len(values) for values in network._KNOWN_LABS.values()]
    assert kept and max(kept) <= bound
