"""pipeline.world.special: the knowledge base's logistic and normal functions without scipy, held to
scipy's, and the batch scorer's process kept free of scipy (16 MB resident, 0.1 s at each start)."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special

from pipeline.contract.schema import REPO_ROOT
from pipeline.world import kept_rows, special

EPS = np.finfo(np.float64).eps
EDGES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 745.0, -745.0, 1e308, -1e308])


def _grid(low: float, high: float) -> np.ndarray:
    return np.concatenate([np.linspace(low, high, 100_001), np.random.default_rng(0).uniform(low, high, 10_000)])


def _relative(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    finite = np.isfinite(expected) & (expected != 0)
    return np.abs(got[finite] - expected[finite]) / np.abs(expected[finite])


@pytest.mark.parametrize("name", ["expit", "log_expit", "ndtr"])
def test_edge_values_are_scipys(name):
    with np.errstate(all="ignore"):
        expected = getattr(scipy.special, name)(EDGES)
    np.testing.assert_array_equal(getattr(special, name)(EDGES.copy()), expected)


@pytest.mark.parametrize("name, ulps", [("expit", 4), ("log_expit", 4)])
def test_logistic_functions_are_scipys_within_a_few_ulps(name, ulps):
    x = _grid(-750, 750)
    assert _relative(getattr(special, name)(x.copy()), getattr(scipy.special, name)(x)).max() <= ulps * EPS


def test_expit_in_place_is_expit():
    x = _grid(-50, 50)
    expected = special.expit(x)
    got = special.expit(x, out=x)
    assert got is x
    np.testing.assert_array_equal(got, expected)
    assert isinstance(special.expit(np.float64(0.0)), np.floating) and special.expit(np.array(0.0)) == 0.5


@pytest.mark.parametrize("low, high, ulps", [(-5, 8.5, 8), (-38, -5, 1000)])  # 1.0 exactly above 8.3
def test_ndtr_is_scipys(low, high, ulps):
    """A few units in the last place, but in the far lower tail (P below 3e-7) where the C library's
    erfc and scipy's own differ by up to about 130 (1000 allowed: 2.2e-13 relative)."""
    x = _grid(low, high)
    assert _relative(special.ndtr(x), scipy.special.ndtr(x)).max() <= ulps * EPS


@pytest.mark.parametrize("module", [special, kept_rows])
def test_the_modules_examples_hold(module):
    assert doctest.testmod(module).failed == 0


def test_ndtr_keeps_shapes_and_scalars():
    assert special.ndtr(np.zeros((2, 3))).shape == (2, 3)
    assert special.ndtr(1.96).shape == () and float(special.ndtr(1.96)) == pytest.approx(0.9750021048517795)
    assert float(special.ndtr(-30.0)) > 0  # 4.9e-198: the tail keeps its relative accuracy
    np.testing.assert_array_equal(special.ndtr(np.array([-np.inf, np.inf, np.nan])), [0.0, 1.0, np.nan])


NO_SCIPY = """
import sys
{run}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "sklearn", "mlflow", "skops"))
print("LOADED", loaded, "BELIEF", "pipeline.world.belief" in sys.modules)
"""


def _modules_after(run: str, tmp_path) -> str:
    """What a fresh interpreter has imported after `run` (argv: the example file, an output path)."""
    sample = REPO_ROOT / "data" / "examples" / "intake_sample.csv"
    argv = [sys.executable, "-c", NO_SCIPY.format(run=run), str(sample), str(tmp_path / "scores.csv")]
    result = subprocess.run(argv, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, check=True)
    assert (tmp_path / "scores.csv").stat().st_size > 0, result.stderr[-2000:]
    return result.stdout


def test_the_cli_scorer_imports_no_scipy(store, tmp_path):
    """`score` as a user runs it, with the champion (its compact form)."""
    run = (
        "import runpy\n"
        "sys.argv = ['pipeline', 'score', '--input', sys.argv[1], '--output', sys.argv[2]]\n"
        "try:\n    runpy.run_module('pipeline', run_name='__main__')\n"
        "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
    )
    assert "LOADED []" in _modules_after(run, tmp_path)


def test_scoring_with_posterior_features_imports_no_scipy(quick_model, tmp_path):
    """A model with the knowledge base's posterior features runs belief propagation as it scores."""
    path = quick_model.compact_form().save(tmp_path / "scoring.npz")
    run = (
        "from pipeline.contract.loader import default_knowledge_base\n"
        "from pipeline.scoring.compact import CompactModel\n"
        "from pipeline.scoring.score import score_file\n"
        "from pipeline.tracking.registry import LoadedModel\n"
        f"model = LoadedModel(CompactModel.load({str(path)!r}), '1', {str(path)!r}, '')\n"
        "score_file(sys.argv[1], sys.argv[2], model, default_knowledge_base(), progress=False)\n"
    )
    assert "LOADED [] BELIEF True" in _modules_after(run, tmp_path)
