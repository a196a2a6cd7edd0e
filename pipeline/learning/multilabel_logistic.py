"""One L2-regularised logistic regression per output, fitted together in float32.

The objective is scikit-learn's `LogisticRegression(C=C)` for each column of Y (intercept not
penalised), summed over the columns: the columns do not share parameters, so the joint minimum
is each column's own minimum. Fitting them together lets every L-BFGS step be two matrix
products over all outputs at once (X @ W and X.T @ R) instead of two matrix-vector products per
output, and a float32 feature block halves the memory a row costs: together that is what lets
the default `make train` afford more training rows in the same time and memory.

`C` may be one number or one per output (rare conditions have few positives and may want a
stronger penalty). A test checks the fit against scikit-learn's per output.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning

ROWS_PER_BLOCK = 65_536  # rows per matrix product: bounds the temporaries (rows x outputs)


def _as_float32(X) -> np.ndarray:
    return np.asarray(X, dtype=np.float32, order="C")


class MultiLabelLogistic(ClassifierMixin, BaseEstimator):
    """Independent logistic regressions for the columns of a 0/1 matrix Y, fitted jointly.

    Minimises, for each output j, C_j * sum_i log-loss_ij + ||w_j||^2 / 2, as
    `LogisticRegression(C=C_j)` does. `tol` bounds the largest gradient component of the
    per-row-averaged objective in the solver's coordinates (centred features divided by their
    standard deviation), so it is not exactly scikit-learn's `tol`; `max_iter` caps the L-BFGS
    steps, and stopping there (as the default experiment does on purpose) warns and leaves
    `converged_` False. An output with no positive (or no negative) row gets an extreme
    intercept and zero-ish weights rather than an error.
    """

    def __init__(self, C: float | list[float] = 1.0, max_iter: int = 1000, tol: float = 1e-4, memory: int = 10):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.memory = memory

    def fit(self, X, Y) -> MultiLabelLogistic:
        X = _as_float32(X)
        Y = np.asarray(Y, dtype=np.float32)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError("X must be a 2-d array of finite numbers (impute blanks first)")
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"Y must be (rows, outputs) with {X.shape[0]} rows, got {Y.shape}")
        if not np.isin(Y, (0.0, 1.0)).all():
            raise ValueError("Y must hold 0 and 1 only")
        n, p = X.shape
        n_out = Y.shape[1]
        C = np.asarray(self.C, dtype=float)
        if C.ndim == 1 and C.shape != (n_out,):
            raise ValueError(f"C has {C.size} values for {n_out} outputs")
        C = np.broadcast_to(C, (n_out,)).copy()
        if np.any(C <= 0):
            raise ValueError("C must be positive")
        penalty = 1.0 / (C * n)  # per-row-averaged objective: mean log-loss + ||w||^2 / (2 C n)
        # L-BFGS works on centred, unit-scale coordinates (V = W * scale, the intercepts taking up
        # the feature means): the same objective and minimum, but one-hot blocks, spline bases (each
        # sums to one) and rare interaction products no longer leave it crawling along near-flat
        # directions.
        mean = X.mean(axis=0, dtype=np.float64)
        square = np.zeros(p)
        for start in range(0, n, ROWS_PER_BLOCK):
            square += np.square(X[start : start + ROWS_PER_BLOCK], dtype=np.float64).sum(axis=0)
        scale = np.maximum(np.sqrt(np.maximum(square / n - mean**2, 0.0)), 1e-3)[:, None]
        prevalence = np.clip(Y.mean(axis=0, dtype=np.float64), 1e-6, 1 - 1e-6)
        theta0 = np.concatenate([np.zeros(p * n_out), np.log(prevalence / (1 - prevalence))])
        self.n_outputs_ = n_out

        def weights(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            W = theta[: p * n_out].reshape(p, n_out) / scale
            return W, theta[p * n_out :] - mean @ W  # the raw problem's weights and intercepts

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W, b = weights(theta)
            W32 = W.astype(np.float32)
            loss = 0.0
            grad_w = np.zeros((p, n_out))
            grad_b = np.zeros(n_out)
            for start in range(0, n, ROWS_PER_BLOCK):
                xb, yb = X[start : start + ROWS_PER_BLOCK], Y[start : start + ROWS_PER_BLOCK]
                z = (xb @ W32).astype(np.float64) + b
                # log(1 + e^z) - y z, stably; its derivative in z is sigmoid(z) - y
                loss += float(np.sum(np.logaddexp(0.0, z)) - np.sum(yb * z))
                r = expit(z) - yb
                grad_w += xb.T @ r.astype(np.float32)
                grad_b += r.sum(axis=0)
            value = loss / n + 0.5 * float(np.sum(penalty * np.sum(W * W, axis=0)))
            # chain rule through b = c - mean @ W and W = V / scale
            grad_W = (grad_w - np.outer(mean, grad_b)) / n + W * penalty
            return value, np.concatenate([(grad_W / scale).ravel(), grad_b / n])

        result = minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={
                "maxiter": self.max_iter,
                "maxcor": self.memory,
                "maxls": 50,
                "gtol": self.tol,
                "ftol": 64 * np.finfo(float).eps,
            },
        )
        self.n_iter_ = int(result.nit)
        self.converged_ = bool(result.success)
        if not self.converged_:
            warnings.warn(
                f"MultiLabelLogistic stopped after {self.n_iter_} L-BFGS steps without meeting tol={self.tol} "
                f"({result.message})",
                ConvergenceWarning,
                stacklevel=2,
            )
        W, b = weights(result.x)
        self.coef_ = W.T.copy()  # (outputs, features), as scikit-learn
        self.intercept_ = b
        self.n_features_in_ = p
        self.classes_ = np.arange(n_out)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        """(rows, outputs) probabilities that each output is 1 (scikit-learn's multi-label shape)."""
        return expit(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(int)
