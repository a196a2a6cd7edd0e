"""Exact attributions of the logistic family, per intake field, on the calibrated logit scale.

For output j the base model's logit is b_j + sum_f w_fj x_f. Written around the training mean
of each feature, logit_j = (b_j + w_j . mean) + sum_f w_fj (x_f - mean_f): each term belongs to
the intake field the feature was built from (a value, its missing indicator, its one-hot
levels, its spline basis); an interaction feature's term is shared equally between its two
fields. For a model linear in its features these are the Shapley values of the logit with the
training distribution as background. Platt and temperature calibration multiply the logit by a
positive slope, so the attributions are scaled by it and still add up exactly; isotonic
calibration is monotone, so the direction (what raised, what lowered) carries over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier


class ExplanationUnavailable(ValueError):
    """The model cannot be explained exactly (another family, or trained before attributions)."""


def _feature_fields(ct, fields: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature index, field index, share) triples mapping every model feature to its field(s)."""
    index = {f: i for i, f in enumerate(fields)}
    feats, flds, shares = [], [], []

    def add(start: int, names: list[str], share: float = 1.0) -> None:
        for k, name in enumerate(names):
            feats.append(start + k)
            flds.append(index[name])
            shares.append(share)

    for name, transformer, columns in ct.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        out = ct.output_indices_[name]
        columns = list(columns)
        steps = transformer.steps if hasattr(transformer, "steps") else [(name, transformer)]
        last = steps[-1][1]
        imputer = next((s for _, s in steps if hasattr(s, "indicator_")), None)
        if name == "interactions":
            pairs = transformer.kw_args["pairs"]
            add(out.start, [a for a, _ in pairs], 0.5)
            add(out.start, [b for _, b in pairs], 0.5)
        elif hasattr(last, "categories_"):  # one-hot: each column's levels in order
            names = [c for c, levels in zip(columns, last.categories_, strict=True) for _ in levels]
            add(out.start, names)
        elif hasattr(last, "bsplines_"):  # spline basis: each column's splines in order
            per = (out.stop - out.start) // len(columns)
            add(out.start, [c for c in columns for _ in range(per)])
        else:  # values, then missing indicators of the columns that had blanks in training
            indicated = [] if imputer is None or imputer.indicator_ is None else list(imputer.indicator_.features_)
            add(out.start, columns + [columns[i] for i in indicated])
        covered = sum(1 for f in feats if out.start <= f < out.stop)
        expected = (out.stop - out.start) * (2 if name == "interactions" else 1)
        if covered != expected:
            raise ExplanationUnavailable(f"cannot map the {name!r} features to intake fields")
    return np.array(feats), np.array(flds), np.array(shares)


def logit_attributions(model, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(attributions (n, conditions, fields), baselines (conditions,)) on the calibrated logit scale.

    Per row and condition, baseline + the sum over fields is the calibrated logit (exactly, for
    sigmoid and temperature calibration; up to the monotone map for isotonic).
    """
    classifier = model.base_.named_steps["classifier"]
    if not (
        isinstance(classifier, OneVsRestClassifier)
        and all(isinstance(e, LogisticRegression) for e in classifier.estimators_)
    ):
        raise ExplanationUnavailable("exact explanations are implemented for the logistic family only")
    if not hasattr(model, "feature_means_"):
        raise ExplanationUnavailable("this model was trained before explanations existed: retrain it (make train)")
    n_cond = len(model.output_columns_) - len(model.cause_members_)
    weights = np.column_stack([e.coef_[0] for e in classifier.estimators_[:n_cond]])  # (F, C)
    bias = np.array([e.intercept_[0] for e in classifier.estimators_[:n_cond]])
    ct = model.base_.named_steps["features"]
    features = np.asarray(ct.transform(X), dtype=float)
    deviation = features - model.feature_means_
    feats, flds, shares = _feature_fields(ct, model.fields_)
    out = np.zeros((len(X), n_cond, len(model.fields_)))
    for field in np.unique(flds):
        pick = flds == field
        contribution = (deviation[:, feats[pick]] * shares[pick]) @ weights[feats[pick]]  # (n, C)
        out[:, :, field] = contribution
    slope = model.calibrator_.slope_[:n_cond] if model.calibration in ("sigmoid", "temperature") else np.ones(n_cond)
    intercept = model.calibrator_.intercept_[:n_cond] if model.calibration == "sigmoid" else np.zeros(n_cond)
    baseline = intercept + slope * (bias + model.feature_means_ @ weights)
    return out * slope[None, :, None], baseline


def reasons_column(
    attributions: np.ndarray,
    answered: np.ndarray,
    top: list[list[str]],
    conditions: list[str],
    fields: list[str],
    n_up: int = 3,
) -> list[str]:
    """Per row, for each top condition: `condition: +field, +field, -field` (answered fields only)."""
    cond_index = {c: i for i, c in enumerate(conditions)}
    rows = []
    for r, names in enumerate(top):
        parts = []
        for name in names:
            a = np.where(answered[r], attributions[r, cond_index[name]], np.nan)
            order = np.argsort(-np.nan_to_num(a, nan=-np.inf))
            up = [f"+{fields[k]}" for k in order[:n_up] if a[k] > 0]
            low = np.nanargmin(a) if np.isfinite(a).any() else None
            down = [f"-{fields[low]}"] if low is not None and a[low] < 0 else []
            parts.append(f"{name}: " + ", ".join(up + down))
        rows.append(" | ".join(parts))
    return rows
