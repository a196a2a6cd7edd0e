"""Model files with skops (no pickle): a reviewed list of the types a model file may contain.

skops is imported only when a model file is written or read (its import alone takes seconds).
"""

from __future__ import annotations

from pathlib import Path

# Reviewed: every entry is a scikit-learn, numpy or project type (or function) that a CauseModel
# is built from; nothing here can run arbitrary code when loaded. Extend only after review.
TRUSTED_TYPES = [
    "numpy.dtype",
    "pipeline.learning.calibration.LabelCalibrator",
    "pipeline.learning.features.categories_with_blank",
    "pipeline.learning.features.interaction_products",
    "pipeline.learning.features.log_scale",
    "pipeline.learning.features.threshold_steps",
    "pipeline.learning.multilabel_logistic.MultiLabelLogistic",
    "pipeline.world.belief.knowledge_posterior",
    "pipeline.learning.cause_model.CauseModel",
    "scipy._lib.array_api_compat.numpy._aliases.asarray",  # numpy.asarray, inside SplineTransformer
    "scipy.interpolate._bsplines.BSpline",  # SplineTransformer's fitted basis
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
]


class UntrustedModelError(ValueError):
    """A model file holds types outside the reviewed list."""


def save_model(model, path: Path) -> Path:
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    return path


def untrusted_types(path: Path) -> list[str]:
    """Types in a model file that the reviewed list does not cover (for review, never to trust)."""
    import skops.io as sio

    return sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))


def load_model(path: Path):
    """Load a model file, refusing any type outside the reviewed list."""
    unknown = untrusted_types(path)
    if unknown:
        raise UntrustedModelError(f"{path}: model file contains unreviewed types {unknown}; refusing to load")
    import skops.io as sio

    return sio.load(path, trusted=TRUSTED_TYPES)


def model_bytes(model) -> bytes:
    """A model as skops bytes (to ship to the workers of a distributed engine)."""
    import skops.io as sio

    return sio.dumps(model)


def load_model_bytes(data: bytes):
    """Load skops bytes from `model_bytes`, refusing any type outside the reviewed list."""
    import skops.io as sio

    unknown = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if unknown:
        raise UntrustedModelError(f"model bytes contain unreviewed types {unknown}; refusing to load")
    return sio.loads(data, trusted=TRUSTED_TYPES)
