"""Per-label recalibration of multi-label probabilities on data the base model did not see."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression

from pipeline.learning.metrics import EPS, calibration_slope_intercept

METHODS = ("sigmoid", "isotonic", "temperature", "none")
CAUSE_CLIP = 1e-9  # probabilities are held this far from 0 and 1 before a cause's stacked logits


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _temperature(y: np.ndarray, z: np.ndarray) -> float:
    """Slope b of P(y) = sigmoid(b z) (no intercept), by Newton's method on the log-loss."""
    b = 1.0
    for _ in range(50):
        mu = expit(b * z)
        grad, hess = z @ (y - mu), (z * z) @ (mu * (1 - mu)) + 1e-12
        b += grad / hess
        if abs(grad / hess) < 1e-10:
            break
    return float(b)


class LabelCalibrator(BaseEstimator):
    """Calibrate each column of an (n, L) probability matrix separately.

    method: `sigmoid` (Platt: a + b logit p), `temperature` (b logit p), `isotonic`, or `none`.
    """

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, P: np.ndarray, Y: np.ndarray) -> LabelCalibrator:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        P, Y = np.asarray(P, dtype=float), np.asarray(Y, dtype=float)
        n_labels = P.shape[1]
        self.slope_, self.intercept_ = np.ones(n_labels), np.zeros(n_labels)
        self.isotonic_ = []
        for j in range(n_labels):
            y, z = Y[:, j], _logit(P[:, j])
            if self.method == "sigmoid" and 0 < y.sum() < len(y):
                self.slope_[j], self.intercept_[j] = calibration_slope_intercept(y, P[:, j])
            elif self.method == "temperature" and 0 < y.sum() < len(y):
                self.slope_[j] = _temperature(y, z)
            elif self.method == "isotonic":
                iso = IsotonicRegression(y_min=1e-6, y_max=1 - 1e-6, out_of_bounds="clip")
                self.isotonic_.append(iso.fit(P[:, j], y))
        return self

    def transform(self, P: np.ndarray) -> np.ndarray:
        P = np.asarray(P, dtype=float)
        if self.method == "none":
            return P
        if self.method == "isotonic":
            return np.column_stack([iso.predict(P[:, j]) for j, iso in enumerate(self.isotonic_)])
        return expit(self.intercept_ + self.slope_ * _logit(P))
