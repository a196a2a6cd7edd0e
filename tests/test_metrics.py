"""Metric functions against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from pipeline.learning.metrics import brier, calibration_slope_intercept, expected_calibration_error, log_loss


def test_ece_by_hand():
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    # three equal-mass bins: {.1,.2} y=0,0 ; {.3,.6} y=1,0 ; {.7,.8} y=1,1
    expected = (2 * abs(0 - 0.15) + 2 * abs(0.5 - 0.45) + 2 * abs(1 - 0.75)) / 6
    assert expected_calibration_error(y, p, n_bins=3) == pytest.approx(expected)


def test_slope_and_intercept_by_hand():
    """With two distinct predictions the fit reproduces both observed rates exactly."""
    p = np.array([0.2] * 10 + [0.6] * 10)
    y = np.array([1] * 3 + [0] * 7 + [1] * 8 + [0] * 2)  # rates 0.3 and 0.8
    slope, intercept = calibration_slope_intercept(y, p)
    expected_slope = (logit(0.8) - logit(0.3)) / (logit(0.6) - logit(0.2))
    assert slope == pytest.approx(expected_slope, rel=1e-8)
    assert intercept == pytest.approx(logit(0.3) - expected_slope * logit(0.2), rel=1e-8)


def test_perfect_calibration_has_unit_slope_zero_intercept():
    rng = np.random.default_rng(0)
    p = rng.beta(1, 6, 200_000)
    y = rng.random(len(p)) < p
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1, abs=0.03) and intercept == pytest.approx(0, abs=0.05)
    assert expected_calibration_error(y, p) < 0.005


def test_log_loss_and_brier_by_hand():
    y, p = np.array([1, 0]), np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert brier(y, p) == pytest.approx((0.04 + 0.16) / 2)
