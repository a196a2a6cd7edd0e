"""Experiment configs: every experiment loads; feature switches and estimator parameters stay
apart; a family is anything the registry declares, and each declared family builds."""

from __future__ import annotations

import pytest

from pipeline.learning.config import EXPERIMENTS_DIR, ConfigError, load_experiment
from pipeline.learning.families import FAMILIES, family


@pytest.mark.parametrize("path", sorted(EXPERIMENTS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_loads_and_names_a_declared_family(path):
    config = load_experiment(path)
    assert config.family in FAMILIES
    assert not {"splines", "interactions"} & set(config.params)
    assert set(config.flat_params()) >= {"family", "features.splines", "features.interactions", "data.n_train"}


def _write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("family: logistic\nparams: {C: 1.0, splines: true}\n", "feature switches"),
        ("family: logistic\nfeatures: {spline: true}\n", "unknown feature keys"),
        ("family: random_forest\n", "family must be one of"),
        ("family: logistic\ncalibration: magic\n", "calibration must be one of"),
        ("family: logistic\ndata: {n_train: 10}\n", "at least 100"),
        ("family: logistic\nlearning_rate: 0.1\n", "unknown keys"),
    ],
)
def test_a_wrong_experiment_is_refused_with_a_reason(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        load_experiment(_write(tmp_path, text))


def test_features_default_to_the_family_and_are_separate_from_params(tmp_path):
    config = load_experiment(_write(tmp_path, "family: logistic\nparams: {C: 0.5}\nfeatures: {interactions: true}\n"))
    assert config.params == {"C": 0.5}
    assert config.features.interactions is True and config.features.splines is None  # the family decides


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_declared_family_builds_a_classifier(name):
    estimator = family(name).build({}, 0)
    assert hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")
    with pytest.raises(ValueError, match="unknown model family"):
        family(name + "_typo")
