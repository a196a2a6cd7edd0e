"""The joint logistic fitter minimises scikit-learn's per-output objective."""

import copy

import numpy as np
import pytest
from helpers import SCHEMA
from scipy.special import expit
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from pipeline.learning.cause_model import CauseModel
from pipeline.learning.families import linear_weights
from pipeline.learning.multilabel_logistic import MultiLabelLogistic
from pipeline.tracking.persistence import load_model_bytes, model_bytes
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model


def _problem(n=4000, p=12, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 0] = rng.random(n) < 0.3  # a 0/1 column with a non-zero mean
    X[:, 1] = 5 + 3 * rng.normal(size=n)  # an uncentred, wide one
    true_w = rng.normal(scale=0.8, size=(p, outputs))
    bias = np.array([-1.0, -3.0, 0.5])[:outputs]
    Y = (rng.random((n, outputs)) < expit(X @ true_w + bias)).astype(int)
    return X.astype(np.float32), Y


def _objective(w, b, X, y, C):
    z = X.astype(float) @ w + b
    return C * np.sum(np.logaddexp(0, z) - y * z) + 0.5 * w @ w


@pytest.mark.parametrize("C", [0.05, 1.0, [0.05, 1.0, 10.0]])
def test_each_output_is_scikit_learns_logistic_regression(C):
    X, Y = _problem()
    joint = MultiLabelLogistic(C=C, tol=1e-8).fit(X, Y)
    assert joint.converged_
    Cs = np.broadcast_to(np.asarray(C, dtype=float), (Y.shape[1],))
    for j in range(Y.shape[1]):
        ref = LogisticRegression(C=Cs[j], tol=1e-10, max_iter=10_000).fit(X.astype(float), Y[:, j])
        ours = _objective(joint.coef_[j], joint.intercept_[j], X, Y[:, j], Cs[j])
        theirs = _objective(ref.coef_[0], ref.intercept_[0], X, Y[:, j], Cs[j])
        assert ours <= theirs + 1e-6 * abs(theirs)
        np.testing.assert_allclose(joint.coef_[j], ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(joint.intercept_[j], ref.intercept_[0], atol=2e-3)
        np.testing.assert_allclose(joint.predict_proba(X)[:, j], ref.predict_proba(X)[:, 1], atol=1e-3)


def test_a_stronger_penalty_shrinks_only_its_own_output():
    X, Y = _problem()
    loose = MultiLabelLogistic(C=1.0).fit(X, Y)
    mixed = MultiLabelLogistic(C=[1.0, 1e-3, 1.0]).fit(X, Y)
    assert np.linalg.norm(mixed.coef_[1]) < 0.5 * np.linalg.norm(loose.coef_[1])
    np.testing.assert_allclose(mixed.coef_[[0, 2]], loose.coef_[[0, 2]], atol=5e-3)


def test_weights_for_scoring_and_bad_arguments():
    X, Y = _problem()
    model = MultiLabelLogistic(C=1.0).fit(X, Y)
    weights, bias = linear_weights(model)
    assert weights.shape == (X.shape[1], Y.shape[1])
    np.testing.assert_allclose(expit(X.astype(float) @ weights + bias), model.predict_proba(X))
    with pytest.raises(ValueError, match="positive"):
        MultiLabelLogistic(C=0.0).fit(X, Y)
    with pytest.raises(ValueError, match="rows"):
        MultiLabelLogistic().fit(X, Y[:10])
    with pytest.raises(ValueError, match="2 values for 3 outputs"):
        MultiLabelLogistic(C=[1.0, 2.0]).fit(X, Y)
    with pytest.raises(ValueError, match="0 and 1"):
        MultiLabelLogistic().fit(X, Y * 2)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        MultiLabelLogistic().fit(bad, Y)


def test_stopping_at_max_iter_warns_and_says_so():
    X, Y = _problem()
    with pytest.warns(ConvergenceWarning, match="stopped after 3 L-BFGS steps"):
        model = MultiLabelLogistic(max_iter=3).fit(X, Y)
    assert not model.converged_ and model.n_iter_ == 3


def test_a_model_with_the_joint_solver_and_thresholds_survives_the_model_file(quick_model):
    """The reviewed skops types cover the new estimator and the threshold step; a model saved before
    thresholds existed (no such attribute) still prints, clones and gives its parameters."""
    assert isinstance(quick_model.base_.named_steps["classifier"], MultiLabelLogistic)
    assert quick_model.thresholds
    loaded = load_model_bytes(model_bytes(quick_model))
    forms = generate_frame(default_model(), 500, 77)
    np.testing.assert_array_equal(loaded.predict_proba(forms), quick_model.predict_proba(forms))
    old = copy.deepcopy(quick_model)
    del old.thresholds  # as a model pickled before the attribute existed
    assert CauseModel.thresholds == () and old.get_params()["thresholds"] == ()
    assert "CauseModel" in repr(old) and clone(old).thresholds == ()
    assert list(SCHEMA.probability_columns) == old.output_columns_
