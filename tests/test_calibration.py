"""Per-label recalibration repairs a miscalibrated model, whatever the method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from pipeline.learning.calibration import LabelCalibrator
from pipeline.learning.metrics import brier, expected_calibration_error


@pytest.mark.parametrize("method", ["sigmoid", "temperature", "isotonic"])
def test_calibration_repairs_a_miscalibrated_model(method):
    rng = np.random.default_rng(1)
    true = rng.beta(1, 5, (40_000, 3))
    y = (rng.random(true.shape) < true).astype(float)
    over_confident = expit(2.0 * logit(true) + (0.0 if method == "temperature" else 0.7))
    fit, test = slice(0, 20_000), slice(20_000, None)
    calibrator = LabelCalibrator(method).fit(over_confident[fit], y[fit])
    fixed = calibrator.transform(over_confident[test])
    for j in range(3):
        before = expected_calibration_error(y[test, j], over_confident[test, j])
        after = expected_calibration_error(y[test, j], fixed[:, j])
        assert after < before / 3, (method, j, before, after)
        assert brier(y[test, j], fixed[:, j]) < brier(y[test, j], over_confident[test, j])
