"""A fitted logistic CauseModel in the compact scoring form (pipeline.scoring.compact).

Each fitted step of the feature ColumnTransformer is read into plain arrays: imputation values,
which columns get a missing indicator, the scaler's means and scales, one-hot levels, the spline
knots and boundary values, the yes/no products; then the logistic weights, the calibration and
the causes' stack. A step this module does not know makes the whole model unsupported
(`CompactUnsupported`), and the scorer then uses the full model: nothing is approximated.
"""

from __future__ import annotations

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer, StandardScaler

from pipeline.learning.calibration import CAUSE_CLIP
from pipeline.learning.families import linear_weights
from pipeline.learning.features import categories_with_blank, interaction_products, log_scale, threshold_steps
from pipeline.learning.metrics import EPS
from pipeline.scoring.compact import CompactModel
from pipeline.world.belief import knowledge_posterior

CALIBRATIONS = ("sigmoid", "temperature", "none")


class CompactUnsupported(ValueError):
    """The model has a part the compact form does not reproduce (it is scored in full instead)."""


def _steps(transformer) -> list:
    return [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]


def _function(step) -> object:
    return step.func if isinstance(step, FunctionTransformer) else None


def _imputer(step, name: str) -> SimpleImputer:
    missing = step.missing_values if isinstance(step, SimpleImputer) else None
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise CompactUnsupported(f"{name}: expected an imputer of NaN, got {step!r}")
    return step


def _block(name: str, transformer, columns: list[str], width: int, i: int, arrays: dict) -> dict:
    """One ColumnTransformer entry as a compact block (its arrays go into `arrays`)."""
    steps = _steps(transformer)
    base = {"columns": list(columns), "width": width}
    if name == "interactions" or _function(steps[0]) is interaction_products:
        if len(steps) != 1 or transformer.kw_args is None:
            raise CompactUnsupported(f"{name}: unexpected products step")
        return {**base, "kind": "products", "pairs": [list(p) for p in transformer.kw_args["pairs"]]}
    if _function(steps[0]) is knowledge_posterior:
        if len(steps) != 1 or transformer.kw_args is None:
            raise CompactUnsupported(f"{name}: unexpected posterior step")
        return {**base, "kind": "posterior", "settings": dict(transformer.kw_args)}
    if _function(steps[0]) is threshold_steps:
        if len(steps) != 1 or transformer.kw_args is None:
            raise CompactUnsupported(f"{name}: unexpected threshold step")
        return {**base, "kind": "steps", "cuts": [[float(c) for c in cuts] for cuts in transformer.kw_args["cuts"]]}
    if _function(steps[0]) is categories_with_blank:
        encoder = steps[-1]
        if len(steps) != 2 or not isinstance(encoder, OneHotEncoder) or encoder.drop is not None:
            raise CompactUnsupported(f"{name}: unexpected one-hot steps")
        return {**base, "kind": "one_hot", "categories": [[str(c) for c in cats] for cats in encoder.categories_]}
    log = _function(steps[0]) is log_scale
    rest = steps[1:] if log else steps
    if any(isinstance(s, FunctionTransformer) for s in rest):
        raise CompactUnsupported(f"{name}: an unknown function step")
    imputer = _imputer(rest[0], name)
    arrays[f"b{i}_fill"] = np.asarray(imputer.statistics_, dtype=np.float64)
    if len(rest) == 2 and isinstance(rest[1], SplineTransformer):
        spline = rest[1]
        if spline.extrapolation != "constant" or not spline.include_bias or spline.sparse_output:
            raise CompactUnsupported(f"{name}: spline extrapolation {spline.extrapolation!r}")
        k = spline.degree
        arrays[f"b{i}_knots"] = np.stack([np.asarray(b.t, dtype=np.float64) for b in spline.bsplines_])
        arrays[f"b{i}_fmin"] = np.stack([b(b.t[k]) for b in spline.bsplines_])
        arrays[f"b{i}_fmax"] = np.stack([b(b.t[-k - 1]) for b in spline.bsplines_])
        return {**base, "kind": "spline", "log": log, "degree": k}
    indicators = [] if imputer.indicator_ is None else [int(f) for f in imputer.indicator_.features_]
    block = {**base, "kind": "impute", "log": log, "indicators": indicators, "scale": False}
    if len(rest) == 2 and isinstance(rest[1], StandardScaler):
        scaler = rest[1]
        if not (scaler.with_mean and scaler.with_std):
            raise CompactUnsupported(f"{name}: a scaler without centring or scaling")
        arrays[f"b{i}_mean"], arrays[f"b{i}_scale"] = np.asarray(scaler.mean_), np.asarray(scaler.scale_)
        block["scale"] = True
    elif len(rest) != 1:
        raise CompactUnsupported(f"{name}: unexpected steps {[type(s).__name__ for s in rest]}")
    return block


def compact_form(model) -> CompactModel:
    """The compact scoring form of a fitted logistic CauseModel; CompactUnsupported otherwise."""
    linear = linear_weights(model.base_.named_steps["classifier"])
    if linear is None:
        raise CompactUnsupported("only the logistic families have a compact form")
    if model.calibration not in CALIBRATIONS:
        raise CompactUnsupported(f"{model.calibration} calibration has no compact form")
    ct = model.base_.named_steps["features"]
    arrays: dict[str, np.ndarray] = {}
    blocks = []
    for name, transformer, columns in ct.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        out = ct.output_indices_[name]
        blocks.append(_block(name, transformer, list(columns), out.stop - out.start, len(blocks), arrays))
    arrays["weights"], arrays["bias"] = linear
    arrays["cal_slope"] = np.asarray(model.calibrator_.slope_, dtype=np.float64)
    arrays["cal_intercept"] = np.asarray(model.calibrator_.intercept_, dtype=np.float64)
    arrays["cause_coef"] = np.ascontiguousarray(np.vstack([c.coef_ for c in model.cause_calibrators_]))
    arrays["cause_intercept"] = np.concatenate([c.intercept_ for c in model.cause_calibrators_])
    spec = {
        "blocks": blocks,
        "outputs": list(model.output_columns_),
        "cause_members": [list(map(int, m)) for m in model.cause_members_],
        "calibration": model.calibration,
        "calibration_eps": EPS,
        "cause_clip": CAUSE_CLIP,
    }
    return CompactModel(spec, arrays)
