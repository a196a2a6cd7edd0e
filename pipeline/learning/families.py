"""Model families, declared once: a name -> how to build its multi-label estimator.

Adding a family is an entry here (and an experiment YAML that names it); the config loader,
the cause model and training read this registry and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neural_network import MLPClassifier

from pipeline.learning.multilabel_logistic import MultiLabelLogistic


@dataclass(frozen=True)
class Family:
    """A model family: its estimator factory (params, seed) -> multi-label classifier, and defaults."""

    name: str
    build: Callable[[dict, int], object]
    splines_by_default: bool  # a spline basis per number unless the experiment says otherwise
    description: str
    dtype: type = np.float64  # the feature block the estimator is fitted on (float32 halves its memory)


def _logistic(params: dict, seed: int):
    return OneVsRestClassifier(LogisticRegression(**{"max_iter": 500, **params}), n_jobs=2)


def _logistic_joint(params: dict, seed: int):
    return MultiLabelLogistic(**params)


def _hist_gradient_boosting(params: dict, seed: int):
    return OneVsRestClassifier(HistGradientBoostingClassifier(**{"random_state": seed, **params}))


def _mlp(params: dict, seed: int):
    params = dict(params)
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return MLPClassifier(**{"early_stopping": True, "random_state": seed, **params})


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("logistic", _logistic, True, "one regularised logistic regression per output"),
        Family(
            "logistic_joint",
            _logistic_joint,
            True,
            "the same logistic regressions, fitted together on float32 features (faster, half the memory)",
            np.float32,
        ),
        Family("hist_gradient_boosting", _hist_gradient_boosting, False, "one gradient-boosted tree model per output"),
        Family("mlp", _mlp, False, "one multi-output neural network"),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def linear_weights(classifier) -> tuple[np.ndarray, np.ndarray] | None:
    """(weights (features, outputs), bias (outputs,)) of a fitted logistic classifier, else None.

    Both logistic families qualify: their logit is bias + features @ weights for every output,
    which the compact scoring form, exact explanations and one-product scoring rely on.
    """
    if isinstance(classifier, MultiLabelLogistic):
        return np.ascontiguousarray(classifier.coef_.T), np.asarray(classifier.intercept_, dtype=float)
    if isinstance(classifier, OneVsRestClassifier) and all(
        isinstance(e, LogisticRegression) for e in classifier.estimators_
    ):
        weights = np.column_stack([e.coef_[0] for e in classifier.estimators_])
        return np.ascontiguousarray(weights), np.array([e.intercept_[0] for e in classifier.estimators_])
    return None
