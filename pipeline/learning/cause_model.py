"""The cause model: features -> base multi-label classifier -> per-label calibration.

It predicts the conditions and the causes of the schema (a cause is present when any of its
conditions is). Conditions are calibrated one by one; a cause is calibrated by a small logistic
stack of its own score and the chance that any of its conditions is present, then raised, if
ever needed, to its likeliest condition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from pipeline.contract.schema import Schema
from pipeline.learning.calibration import CAUSE_CLIP, LabelCalibrator
from pipeline.learning.families import family, linear_weights
from pipeline.learning.features import feature_transformer
from pipeline.scoring.compact import cause_inputs

FEATURE_FIT_ROWS = 200_000  # rows the feature transformer's statistics are estimated from
BLOCK_ROWS = 50_000  # rows transformed at a time into the training feature block


def feature_block(features, X: pd.DataFrame, dtype) -> np.ndarray:
    """The fitted transformer's output for every row of X, as one preallocated (rows, features) array."""
    first = np.asarray(features.transform(X.iloc[:BLOCK_ROWS]))
    block = np.empty((len(X), first.shape[1]), dtype=dtype)
    block[: len(first)] = first
    for start in range(BLOCK_ROWS, len(X), BLOCK_ROWS):
        block[start : start + BLOCK_ROWS] = features.transform(X.iloc[start : start + BLOCK_ROWS])
    return block


def targets(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """(n, conditions + causes) 0/1 targets: the label_<condition> columns, then one column per cause."""
    conds = frame[list(schema.label_columns)].to_numpy().astype(np.int8)
    causes = [conds[:, [schema.conditions.index(c) for c in cause.conditions]].max(axis=1) for cause in schema.causes]
    return np.column_stack([conds, *causes])


def coherent_cause(estimate: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """A cause's probability held between its likeliest condition and min(1, the sum of its conditions).

    >>> coherent_cause(np.array([0.9, 0.1, 0.3]), np.array([[0.2, 0.3], [0.2, 0.3], [0.2, 0.3]])).round(2).tolist()
    [0.5, 0.3, 0.3]
    """
    low, high = conditions.max(axis=1), np.minimum(1.0, conditions.sum(axis=1))
    return np.clip(estimate, low, high)


class CauseModel(BaseEstimator):
    """Calibrated multi-label probabilities for the conditions and causes of the schema.

    `fit(X, Y, X_cal, Y_cal, schema=...)` fits the base model on (X, Y) and the calibrators on
    the separate (X_cal, Y_cal); X are typed intake frames of `schema`, Y the output of `targets`.
    `family` names an entry of pipeline.learning.families; `params` are its estimator's.
    """

    # Models saved before threshold features existed have no such attribute; a class default keeps
    # get_params, repr and clone working on them (they were fitted without thresholds).
    thresholds: tuple[tuple[str, tuple[float, ...]], ...] = ()
    posterior: dict | None = None  # likewise for models saved before the knowledge-base posterior feature

    def __init__(
        self,
        family: str = "logistic",
        params: dict | None = None,
        calibration: str = "sigmoid",
        log_scaled: tuple[str, ...] = (),
        splines: bool = False,
        interactions: tuple[tuple[str, str], ...] = (),
        random_state: int = 0,
        thresholds: tuple[tuple[str, tuple[float, ...]], ...] = (),
        posterior: dict | None = None,
    ):
        self.family = family
        self.params = params
        self.calibration = calibration
        self.log_scaled = log_scaled
        self.splines = splines
        self.interactions = interactions
        self.random_state = random_state
        self.thresholds = thresholds
        self.posterior = posterior

    def fit(
        self, X: pd.DataFrame, Y: np.ndarray, X_cal: pd.DataFrame, Y_cal: np.ndarray, *, schema: Schema
    ) -> CauseModel:
        chosen = family(self.family)
        features = feature_transformer(
            schema,
            tuple(self.log_scaled),
            self.splines,
            [tuple(p) for p in self.interactions],
            [(name, tuple(cuts)) for name, cuts in self.thresholds],
            self.posterior,
        )
        # The transformer's statistics (medians, means and scales, spline ranges) come from the first
        # FEATURE_FIT_ROWS training rows (i.i.d. draws, so any 200k estimate them to ~0.2% of a
        # standard deviation); then the whole feature block is filled BLOCK_ROWS rows at a time, in
        # the family's dtype, so a large training set never holds a float64 copy of its features.
        features.fit(X.iloc[:FEATURE_FIT_ROWS])
        matrix = feature_block(features, X, chosen.dtype)
        classifier = chosen.build(dict(self.params or {}), self.random_state).fit(matrix, Y)
        self.base_ = Pipeline([("features", features), ("classifier", classifier)])
        # The training mean of every model feature: the baseline of exact attributions (--explain).
        self.feature_means_ = matrix.mean(axis=0, dtype=np.float64)
        del matrix
        self.fields_ = list(schema.column_names)
        if self.posterior:
            from pipeline.learning.explain import posterior_part_means

            self.posterior_part_means_ = posterior_part_means(self, X.iloc[:FEATURE_FIT_ROWS])
        self.output_columns_ = list(schema.probability_columns)
        self.cause_members_ = [[schema.conditions.index(c) for c in cause.conditions] for cause in schema.causes]
        raw_cal = self.base_.predict_proba(X_cal)
        self.calibrator_ = LabelCalibrator(self.calibration).fit(raw_cal, Y_cal)
        stacked = self._cause_inputs(self.calibrator_.transform(raw_cal))
        n_cond = len(self.output_columns_) - len(self.cause_members_)
        self.cause_calibrators_ = [
            LogisticRegression(C=1e4, max_iter=1000).fit(stacked[g], Y_cal[:, n_cond + g])
            for g in range(len(self.cause_members_))
        ]
        return self

    def _cause_inputs(self, p: np.ndarray) -> list[np.ndarray]:
        """Per cause: logit of its own calibrated score and of 1 - prod(1 - p_condition)."""
        return cause_inputs(p, self.cause_members_, CAUSE_CLIP)

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        linear = linear_weights(self.base_.named_steps["classifier"])
        if linear is not None:
            # One matrix product for all outputs instead of one pass over the features per output.
            weights, bias = linear
            features = self.base_.named_steps["features"].transform(X)
            return expit(np.asarray(features, dtype=float) @ weights + bias)
        return np.asarray(self.base_.predict_proba(X), dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, conditions + causes) calibrated probabilities, coherent on every row.

        P(any of a cause's conditions) lies between its likeliest condition and the sum of its
        conditions (the union bound), so each cause's stacked estimate is held to that interval.
        """
        p = np.clip(self.calibrator_.transform(self.predict_uncalibrated(X)), 0.0, 1.0)
        n_cond = len(self.output_columns_) - len(self.cause_members_)
        for g, (members, inputs) in enumerate(zip(self.cause_members_, self._cause_inputs(p), strict=True)):
            stacked = self.cause_calibrators_[g].predict_proba(inputs)[:, 1]
            p[:, n_cond + g] = coherent_cause(stacked, p[:, members])
        return p

    def explanation_problem(self) -> str | None:
        """Why this model cannot explain its scores exactly (pipeline.learning.explain), or None."""
        from pipeline.learning.explain import explanation_problem

        return explanation_problem(self)

    def attributions(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Exact per-field attributions of each condition's calibrated logit (pipeline.learning.explain)."""
        from pipeline.learning.explain import logit_attributions

        return logit_attributions(self, X)

    def compact_form(self):
        """This model in the compact scoring form (pipeline.scoring.compact); CompactUnsupported
        (a ValueError) for a family or calibration it cannot reproduce."""
        from pipeline.learning.compact_export import compact_form

        return compact_form(self)

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.predict_proba(X), columns=self.output_columns_, index=X.index)
