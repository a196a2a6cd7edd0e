"""Intake columns -> model features. A blank is information: every field gets a missing
indicator (yes/no and numbers) or its own `blank` category, never a silent fill."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer, StandardScaler

from pipeline.contract.schema import Schema
from pipeline.world.belief import knowledge_posterior

BLANK = "blank"


def categories_with_blank(frame: pd.DataFrame) -> np.ndarray:
    """Category columns as text, with blanks as the category `blank`."""
    return frame.astype(object).where(frame.notna(), BLANK).to_numpy(dtype=object)


def log_scale(x: np.ndarray) -> np.ndarray:
    """log1p for skewed, positive numbers (labs such as ferritin or CK); NaN stays NaN."""
    return np.log1p(np.clip(np.asarray(x, dtype=float), 0, None))


def feature_transformer(
    schema: Schema,
    log_scaled: tuple[str, ...],
    splines: bool,
    interactions: list[tuple[str, str]] | None = None,
    thresholds: list[tuple[str, tuple[float, ...]]] | None = None,
    posterior: dict | None = None,
) -> ColumnTransformer:
    """ColumnTransformer over a typed intake frame.

    `posterior` ({"population", "kb_sha256", "iterations"}): add the knowledge base's approximate
    posterior logit of every condition (pipeline.world.belief) as one feature per condition: the
    explaining away between findings that a sum of per-field terms cannot represent.
    """
    yes_no = [c.name for c in schema.columns_of(kind="yes_no")]
    categories = [c.name for c in schema.columns_of(kind="category")]
    numbers = [c.name for c in schema.columns if c.kind in ("integer", "number")]
    logged = [c for c in numbers if c in log_scaled]
    linear = [c for c in numbers if c not in log_scaled]

    def numeric(prefix_steps):
        steps = [
            *prefix_steps,
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        ]
        steps.append(StandardScaler())
        return make_pipeline(*steps)

    transformers = [
        (
            "yes_no",
            SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=True, keep_empty_features=True),
            yes_no,
        ),
        (
            "category",
            make_pipeline(
                FunctionTransformer(categories_with_blank, feature_names_out="one-to-one"),
                OneHotEncoder(
                    categories=[[*schema.column(c).categories, BLANK] for c in categories],
                    sparse_output=False,
                    handle_unknown="ignore",
                ),
            ),
            categories,
        ),
        ("linear", numeric([]), linear),
        ("logged", numeric([FunctionTransformer(log_scale, feature_names_out="one-to-one")]), logged),
    ]
    if splines:
        # Lab likelihood ratios are not linear in the value: a spline basis per number.
        def spline(prefix_steps):
            return make_pipeline(
                *prefix_steps,
                SimpleImputer(strategy="median", keep_empty_features=True),
                SplineTransformer(n_knots=6, degree=3),
            )

        transformers.append(("spline_linear", spline([]), linear))
        log = FunctionTransformer(log_scale, feature_names_out="one-to-one")
        transformers.append(("spline_logged", spline([log]), logged))
    if thresholds:
        # A band of the knowledge base changes a risk by a step at its cut: splines only round it off.
        transformers.append(
            (
                "thresholds",
                FunctionTransformer(threshold_steps, kw_args={"cuts": [list(c) for _, c in thresholds]}),
                [name for name, _ in thresholds],
            )
        )
    if interactions:
        used = sorted({name for pair in interactions for name in pair})
        transformers.append(
            (
                "interactions",
                FunctionTransformer(interaction_products, kw_args={"pairs": [list(p) for p in interactions]}),
                used,
            )
        )
    if posterior:
        transformers.append(
            ("posterior", FunctionTransformer(knowledge_posterior, kw_args=dict(posterior)), list(schema.column_names))
        )
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)


def threshold_steps(frame: pd.DataFrame, cuts: list[list[float]]) -> np.ndarray:
    """1.0 where a number is at or above each of its column's cuts, else 0.0 (a blank is 0.0:
    its missing indicator is another feature); one column per cut, column by column."""
    values = frame.to_numpy(dtype=float)
    steps = [values[:, j] >= cut for j, column_cuts in enumerate(cuts) for cut in column_cuts]
    return np.column_stack(steps).astype(float)


def knowledge_thresholds(kb) -> list[tuple[str, tuple[float, ...]]]:
    """(number, cuts) at which the knowledge base changes a probability by a step: the risk-factor
    bands (BMI, hours sitting or standing) and the lower end of a finding's present range (a severe
    complaint)."""
    numbers = {c.name for c in kb.schema.columns if c.kind in ("integer", "number")}
    cuts = {band.field: set(band.cuts) for band in kb.bands.values() if band.field in numbers}
    for finding in kb.findings:
        if finding.field in numbers and finding.present_range is not None:
            cuts.setdefault(finding.field, set()).add(float(finding.present_range[0]))
    return [(field, tuple(sorted(cuts[field]))) for field in kb.schema.column_names if field in cuts]


def interaction_products(frame: pd.DataFrame, pairs: list[tuple[str, str]]) -> np.ndarray:
    """Products of yes/no pairs (a blank counts as no); one column per pair."""
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    values = np.nan_to_num(frame[names].to_numpy(dtype=float))
    index = {name: i for i, name in enumerate(names)}
    left = [index[a] for a, _ in pairs]
    right = [index[b] for _, b in pairs]
    return values[:, left] * values[:, right]


def knowledge_interactions(kb, strong_log_odds: float = 1.5, min_link: float = 0.3) -> list[tuple[str, str]]:
    """Yes/no pairs the knowledge base says interact: a condition's strong risk factor with each of its
    findings (muscle pain matters for statin myopathy only on a statin), and two findings that share a
    condition (explaining away)."""
    schema = kb.schema
    yes_no = {c.name for c in schema.columns_of(kind="yes_no")}
    findings_of = {
        c: [
            f.field
            for f in kb.findings
            if f.field in yes_no and any(lk.condition == c and lk.p >= min_link for lk in f.links)
        ]
        for c in kb.condition_names
    }
    pairs = set()
    for cond in kb.conditions:
        strong = [e.factor for e in cond.effects if e.factor in yes_no and abs(e.log_odds) >= strong_log_odds]
        pairs |= {(r, f) for r in strong for f in findings_of[cond.name]}
        fields = sorted(findings_of[cond.name])
        pairs |= {(a, b) for i, a in enumerate(fields) for b in fields[i + 1 :]}
    return sorted(pairs)
