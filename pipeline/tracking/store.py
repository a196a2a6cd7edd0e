"""MLflow: where runs go and what every run is tagged with."""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

from pipeline.contract.schema import REPO_ROOT

EXPERIMENT = "leg-fatigue"
PACKAGES = ("scikit-learn", "pandas", "numpy", "pyarrow", "mlflow", "skops", "scipy")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else SQLite at the repo root whatever the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def configure(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and the experiment; returns the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        # A local store keeps artifacts beside mlflow.db, not in whatever directory we run from.
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in PACKAGES}


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (the project package itself is installed locally)."""
    return [f"{name}=={version}" for name, version in package_versions().items()] + [
        f"pyyaml=={metadata.version('pyyaml')}",
        f"leg-fatigue-pipeline=={metadata.version('leg-fatigue-pipeline')}",
    ]
