"""One typed, frozen configuration per experiment, loaded from experiments/<name>.yaml."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from pipeline.contract.schema import REPO_ROOT
from pipeline.learning.families import FAMILIES

EXPERIMENTS_DIR = REPO_ROOT / "experiments"
CALIBRATIONS = ("sigmoid", "isotonic", "temperature", "none")


@dataclass(frozen=True)
class DataConfig:
    population: str = "general"
    seed: int = 42
    n_train: int = 200_000
    n_calibration: int = 50_000
    n_validation: int = 50_000
    n_test: int = 100_000


@dataclass(frozen=True)
class FeatureConfig:
    """Switches of the feature transform, apart from the estimator's parameters."""

    splines: bool | None = None  # a cubic spline basis per number; None: the family's default
    interactions: bool = False  # the yes/no pairs the knowledge base says interact
    thresholds: bool = False  # 0/1 steps at the knowledge base's cuts (BMI 25 and 30, a severe complaint, ...)
    posterior: bool = False  # the knowledge base's approximate posterior logit per condition (explaining away)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    description: str
    family: str
    params: dict = field(default_factory=dict)  # the estimator's parameters only
    features: FeatureConfig = field(default_factory=FeatureConfig)
    calibration: str = "sigmoid"
    data: DataConfig = field(default_factory=DataConfig)
    candidate: bool = True  # false: a utility config (tests, demo) that `make experiments` skips

    def flat_params(self) -> dict[str, str]:
        """Every setting as one MLflow param each."""
        flat = {"name": self.name, "family": self.family, "calibration": self.calibration, "candidate": self.candidate}
        flat.update({f"data.{k}": v for k, v in asdict(self.data).items()})
        flat.update({f"features.{k}": v for k, v in asdict(self.features).items()})
        flat.update({f"model.{k}": json.dumps(v) for k, v in sorted(self.params.items())})
        return {k: str(v) for k, v in flat.items()}

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


class ConfigError(ValueError):
    pass


def load_experiment(path: Path | str) -> ExperimentConfig:
    """Read and check experiments/<name>.yaml (a bare name looks in experiments/)."""
    path = Path(path)
    if not path.suffix:
        path = EXPERIMENTS_DIR / f"{path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml")))
        raise ConfigError(f"{path}: no such experiment (known: {known})")
    raw = yaml.safe_load(path.read_text()) or {}
    allowed = {"name", "description", "family", "params", "features", "calibration", "data", "candidate"}
    if unknown := set(raw) - allowed:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    if raw.get("family") not in FAMILIES:
        raise ConfigError(f"{path}: family must be one of {tuple(FAMILIES)}, got {raw.get('family')!r}")
    if raw.get("calibration", "sigmoid") not in CALIBRATIONS:
        raise ConfigError(f"{path}: calibration must be one of {CALIBRATIONS}")
    params = dict(raw.get("params") or {})
    feature_keys = set(FeatureConfig.__dataclass_fields__)
    if misplaced := feature_keys & set(params):
        raise ConfigError(
            f"{path}: {sorted(misplaced)} are feature switches: put them under `features:`, not `params:`"
        )
    features_raw = raw.get("features") or {}
    if unknown := set(features_raw) - feature_keys:
        raise ConfigError(f"{path}: unknown feature keys {sorted(unknown)} (allowed: {sorted(feature_keys)})")
    data_raw = raw.get("data") or {}
    data_fields = set(DataConfig.__dataclass_fields__)
    if unknown := set(data_raw) - data_fields:
        raise ConfigError(f"{path}: unknown data keys {sorted(unknown)} (allowed: {sorted(data_fields)})")
    data = DataConfig(**data_raw)
    for key in ("n_train", "n_calibration", "n_validation", "n_test"):
        if getattr(data, key) < 100:
            raise ConfigError(f"{path}: data.{key} must be at least 100")
    return ExperimentConfig(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        family=raw["family"],
        params=params,
        features=FeatureConfig(**features_raw),
        calibration=raw.get("calibration", "sigmoid"),
        data=data,
        candidate=bool(raw.get("candidate", True)),
    )
