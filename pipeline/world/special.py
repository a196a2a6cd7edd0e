"""The logistic and normal functions of scipy.special that the knowledge base's inference uses, in
numpy and the standard library: the batch scorer runs this inference for its posterior features,
and importing scipy.special would cost it about 15 MB resident and 0.1 s at each start.

    >>> float(expit(np.array(0.0))), float(log_expit(np.array(0.0))) == float(np.log(0.5))
    (0.5, True)
    >>> round(float(ndtr(np.array(1.96))), 6), float(ndtr(np.array(-30.0))) > 0
    (0.975002, True)

tests/test_special.py holds them to scipy's: expit and log_expit within a few units in the last
place, ndtr within 2e-13 relative (the two C libraries' erfc differ in the far lower tail, below
x = -5, by up to about 130 units in the last place; a few units elsewhere).
"""

from __future__ import annotations

import math

import numpy as np

_ERF = np.frompyfunc(math.erf, 1, 1)
_ERFC = np.frompyfunc(math.erfc, 1, 1)


def expit(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-x)) in that order, as scipy.special.expit computes it (numpy's exp may differ
    from the C library's in the last bit); `out` may be x."""
    with np.errstate(over="ignore"):  # exp(-x) is inf for x below about -709: then 1 / inf = 0, as in scipy
        denominator = np.exp(np.negative(x, out=out), out=out)
    denominator += 1.0
    return np.divide(1.0, denominator, out=out)


def log_expit(x: np.ndarray) -> np.ndarray:
    """log(expit(x)) without underflow: -log(1 + exp(-x)), accurate for large |x| of either sign."""
    with np.errstate(invalid="ignore"):  # a NaN stays NaN, as in scipy
        return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


def ndtr(x: np.ndarray | float) -> np.ndarray:
    """The standard normal CDF, as scipy (cephes) computes it: 0.5 + 0.5 erf(x / sqrt 2) near 0, else
    from erfc, so that a far tail keeps its relative accuracy. Element by element through the C
    library's erf and erfc (the knowledge base asks for a few hundred values at a time)."""
    z = np.asarray(x, dtype=np.float64).reshape(-1) * math.sqrt(0.5)
    out = 0.5 * _ERFC(np.abs(z)).astype(np.float64)
    np.subtract(1.0, out, out=out, where=z > 0)
    near = np.abs(z) < math.sqrt(0.5)
    out[near] = 0.5 + 0.5 * _ERF(z[near]).astype(np.float64)
    return out.reshape(np.shape(x))
