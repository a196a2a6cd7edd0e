"""Exact attributions of the logistic family, per intake field, on the calibrated logit scale.

For output j the base model's logit is b_j + sum_f w_fj x_f. Written around the training mean
of each feature, logit_j = (b_j + w_j . mean) + sum_f w_fj (x_f - mean_f): each term belongs to
the intake field the feature was built from (a value, its missing indicator, its one-hot
levels, its spline basis); an interaction feature's term is shared equally between its two
fields. For a model linear in its features these are the Shapley values of the logit with the
training distribution as background. Platt and temperature calibration multiply the logit by a
positive slope, so the attributions are scaled by it and still add up exactly; isotonic
calibration is monotone, so the direction (what raised, what lowered) carries over.

The knowledge base's posterior features (pipeline.world.belief) depend on the whole form, but
each is a constant plus a sum of per-field parts (a prior feature's term, a negative finding's,
a positive finding's or a lab's message), so its term is split by those parts, each less its
training mean (`posterior_part_means_`); the sum stays exact. The split follows the messages the
form's other findings shaped: a finding that another condition explains better sends a smaller
message, and so gets a smaller share, which is the explaining away the feature adds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.learning.families import linear_weights
from pipeline.world.belief import knowledge_model, posterior_parts


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
        if name == "posterior":  # a function of many fields: split by posterior_parts, not here
            continue
        if name == "interactions":
            pairs = transformer.kw_args["pairs"]
            add(out.start, [a for a, _ in pairs], 0.5)
            add(out.start, [b for _, b in pairs], 0.5)
        elif name == "thresholds":  # each column's steps in order
            cuts = transformer.kw_args["cuts"]
            add(out.start, [c for c, column_cuts in zip(columns, cuts, strict=True) for _ in column_cuts])
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


def explanation_problem(model) -> str | None:
    """Why `model` cannot be explained exactly, or None when it can."""
    if linear_weights(model.base_.named_steps["classifier"]) is None:
        return "exact explanations are implemented for the logistic families only (logistic, logistic_joint)"
    if not hasattr(model, "feature_means_"):
        return "this model was trained before explanations existed: retrain it (make train)"
    if getattr(model, "posterior", None) and not hasattr(model, "posterior_part_means_"):
        return "this model's knowledge-base posterior has no per-field means: retrain it (make train)"
    return None


PART_ROWS = 5_000  # rows whose posterior parts (rows x conditions x fields, ~60 MB) are held at once


def _posterior(model):
    """(the posterior block's first feature, its settings) when the model has the knowledge-base
    posterior feature, else None."""
    ct = model.base_.named_steps["features"]
    if "posterior" not in ct.named_transformers_:
        return None
    return ct.output_indices_["posterior"].start, ct.named_transformers_["posterior"].kw_args


def _parts(model, X: pd.DataFrame, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    kb_model = knowledge_model(settings["population"], settings["kb_sha256"])
    return posterior_parts(kb_model, X, model.fields_, int(settings["iterations"]))


def posterior_part_means(model, X: pd.DataFrame) -> np.ndarray:
    """(conditions, fields) the training mean of each field's part of each posterior logit."""
    _, settings = _posterior(model)
    total = None
    for start in range(0, len(X), PART_ROWS):
        parts, _ = _parts(model, X.iloc[start : start + PART_ROWS], settings)
        total = parts.sum(axis=0) if total is None else total + parts.sum(axis=0)
    return total / max(len(X), 1)


def logit_attributions(model, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(attributions (n, conditions, fields), baselines (conditions,)) on the calibrated logit scale.

    Per row and condition, baseline + the sum over fields is the calibrated logit (exactly, for
    sigmoid and temperature calibration; up to the monotone map for isotonic).
    """
    problem = explanation_problem(model)
    if problem:
        raise ExplanationUnavailable(problem)
    n_cond = len(model.output_columns_) - len(model.cause_members_)
    weights, bias = linear_weights(model.base_.named_steps["classifier"])
    weights, bias = weights[:, :n_cond], bias[:n_cond]  # (F, C), (C,)
    ct = model.base_.named_steps["features"]
    features = np.asarray(ct.transform(X), dtype=float)
    deviation = features - model.feature_means_
    feats, flds, shares = _feature_fields(ct, model.fields_)
    out = np.zeros((len(X), n_cond, len(model.fields_)))
    for field in np.unique(flds):
        pick = flds == field
        contribution = (deviation[:, feats[pick]] * shares[pick]) @ weights[feats[pick]]  # (n, C)
        out[:, :, field] = contribution
    posterior = _posterior(model)
    if posterior is not None:
        # The posterior feature of condition k is constant_k + the sum of its per-field parts: each
        # field's part, less its training mean, goes to that field; the rest joins the baseline.
        start, settings = posterior
        w = weights[start : start + model.posterior_part_means_.shape[0]]  # (posterior features, C)
        for first in range(0, len(X), PART_ROWS):  # parts are rows x conditions x fields: a block at a time
            parts, _ = _parts(model, X.iloc[first : first + PART_ROWS], settings)
            parts -= model.posterior_part_means_
            out[first : first + PART_ROWS] += np.einsum("nkf,kc->ncf", parts, w)
        constant = knowledge_model(settings["population"], settings["kb_sha256"]).condition_bias
        rest = constant + model.posterior_part_means_.sum(axis=1) - model.feature_means_[start : start + len(w)]
        bias = bias + rest @ w
    slope = model.calibrator_.slope_[:n_cond] if model.calibration in ("sigmoid", "temperature") else np.ones(n_cond)
    intercept = model.calibrator_.intercept_[:n_cond] if model.calibration == "sigmoid" else np.zeros(n_cond)
    baseline = intercept + slope * (bias + model.feature_means_ @ weights)
    return out * slope[None, :, None], baseline
