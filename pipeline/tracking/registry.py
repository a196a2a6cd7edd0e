"""The model registry: one home for resolving a model URI to (model, version), loading the
champion, and the rule that decides when the champion alias moves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.contract.schema import Schema

REGISTERED_MODEL = "leg-fatigue-causes"
CHAMPION = "champion"
CHAMPION_URI = f"models:/{REGISTERED_MODEL}@{CHAMPION}"


class ModelMismatchError(ValueError):
    """The model was made for another schema version or label set."""


class ModelUnavailableError(ValueError):
    """MLflow cannot find or load the model (no such name, alias or version, or no registry)."""


@dataclass
class LoadedModel:
    """A logged model ready to score: the estimator inside the pyfunc, and its registry version."""

    model: object  # a CauseModel
    version: str
    uri: str
    run_id: str = ""  # the MLflow run that logged it


def registered_version(uri: str) -> str:
    """The registry version a `models:/` URI names (alias, number or `latest`); "" for other URIs."""
    if not uri.startswith("models:/"):
        return ""
    from mlflow import MlflowClient

    name, _, alias = uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    if alias:
        return str(client.get_model_version_by_alias(name, alias).version)
    name, _, ref = name.partition("/")
    if ref.isdigit():
        return ref
    # "latest" (or a legacy stage): the newest registered version
    return str(max(int(v.version) for v in client.search_model_versions(f"name='{name}'")))


def logged_model_version(artifact: str | Path) -> str:
    """The registry version of the logged model holding `artifact` (a file inside its directory),
    found by the run that logged it; `run-<id>` when the registry cannot say (an exported copy)."""
    import yaml
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    for folder in Path(artifact).resolve().parents:
        if (folder / "MLmodel").exists():
            spec = yaml.safe_load((folder / "MLmodel").read_text()) or {}
            break
    else:
        return "unknown"
    run_id = str(spec.get("run_id") or "")
    if not run_id:
        return "unknown"
    try:
        versions = MlflowClient().search_model_versions(f"name='{REGISTERED_MODEL}' and run_id='{run_id}'")
    except MlflowException:
        versions = []
    return str(max(int(v.version) for v in versions)) if versions else f"run-{run_id[:8]}"


def check_compatible(meta: dict, uri: str, schema: Schema) -> None:
    """Refuse a model made for another schema version or another label set."""
    if str(meta.get("schema_version")) != str(schema.version):
        raise ModelMismatchError(
            f"model {uri} was made for intake schema version {meta.get('schema_version')!r}, "
            f"this scorer reads version {schema.version}"
        )
    outputs = list(meta.get("outputs") or [])
    if outputs != list(schema.probability_columns):
        missing = sorted(set(schema.probability_columns) - set(outputs))
        extra = sorted(set(outputs) - set(schema.probability_columns))
        raise ModelMismatchError(
            f"model {uri} predicts another label set (missing {missing or 'none'}, extra {extra or 'none'})"
        )


def _mlmodel(directory: Path) -> dict:
    import yaml

    from pipeline.contract.schema import SAFE_LOADER

    return yaml.load((directory / "MLmodel").read_text(), Loader=SAFE_LOADER) or {}


def _compact(uri: str, schema: Schema) -> LoadedModel | None:
    """The model's compact scoring form, found and read without MLflow; None when there is none (a model
    logged before the form existed, another family) or the registry cannot be read directly."""
    from pipeline.scoring.compact import CompactFormError, CompactModel
    from pipeline.tracking import sqlite_registry

    if uri.startswith("models:/"):
        found = sqlite_registry.resolve(uri)
        if found is None:
            return None
        directory, version, run_id = found.directory, found.version, found.run_id
    elif (Path(uri) / "MLmodel").is_file():
        directory, version, run_id = Path(uri), None, ""
    else:
        return None
    spec = _mlmodel(directory)
    check_compatible(spec.get("metadata") or {}, uri, schema)
    artifacts = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    if "scoring" not in artifacts:
        return None
    if version is None:  # a local copy: the registry version of the run that logged it, as the pyfunc says
        run_id = str(spec.get("run_id") or "")
        version = sqlite_registry.version_of_run(REGISTERED_MODEL, run_id) if run_id else "unknown"
        if version is None:
            return None
        version = version or f"run-{run_id[:8]}"
    try:
        compact = CompactModel.load(directory / artifacts["scoring"]["path"])
    except CompactFormError:
        return None
    return LoadedModel(compact, version, uri, run_id)


def load_for_scoring(uri: str, schema: Schema, full: bool = False) -> LoadedModel:
    """The model to score with: its compact form when it has one (no MLflow, skops or scikit-learn
    imported), else, or with `full` (explanations need the whole model), the model as MLflow loads it."""
    if not full:
        compact = _compact(uri, schema)
        if compact is not None:
            return compact
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.store import configure

    try:
        configure()
        return load_model(uri, schema)
    except MlflowException as err:
        raise ModelUnavailableError(str(err).splitlines()[0]) from None


def load_model(uri: str, schema: Schema) -> LoadedModel:
    """Load a registered or local MLflow model, check it speaks this schema, and find its version."""
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(uri)
    check_compatible(pyfunc.metadata.metadata or {}, uri, schema)
    inner = pyfunc.unwrap_python_model()
    version = registered_version(uri) or inner.version  # a local copy: the version the pyfunc itself reports
    return LoadedModel(inner.model, version, uri, str(pyfunc.metadata.run_id or ""))


QUALITY_METRICS = {
    "val.log_loss_ratio_to_oracle": "validation log-loss / the oracle's",
    "val.max_ece": "largest calibration error (ECE) of any output",
    "val.mean_roc_auc": "mean ROC AUC over the conditions",
    "val.mean_log_loss": "mean log-loss over the conditions",
}


def model_quality(run_id: str) -> dict[str, float]:
    """The validation figures logged with the model's training run; empty when the store cannot say."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}
    try:
        metrics = MlflowClient().get_run(run_id).data.metrics
    except MlflowException:
        return {}
    return {name: float(metrics[name]) for name in QUALITY_METRICS if name in metrics}


def load_champion(schema: Schema) -> LoadedModel | None:
    """The champion, or None when the registry has none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return load_model(CHAMPION_URI, schema)
    except MlflowException:
        return None


def champion_version() -> str | None:
    """The champion's version number without loading it; None when there is no champion."""
    from mlflow.exceptions import MlflowException

    try:
        return registered_version(CHAMPION_URI)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


def promotion_decision(mine: float, champion: float | None, forced: bool = False) -> Promotion:
    """The champion alias moves to a new version only on a lower validation log-loss, or on request."""
    if forced:
        return Promotion(True, "promoted on request (--promote)")
    if champion is None:
        return Promotion(True, "no champion yet")
    if mine < champion:
        return Promotion(True, f"validation log-loss {mine:.5f} < champion's {champion:.5f}")
    return Promotion(False, f"validation log-loss {mine:.5f} >= champion's {champion:.5f}")


def set_champion(version: str, decision: Promotion) -> None:
    """Record the decision on the version; move the alias when it is a promotion."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if decision.promote:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
    client.set_model_version_tag(REGISTERED_MODEL, version, "promotion", decision.reason)
