"""The batch report's inputs: a reference profile of the training population, and the page."""

from __future__ import annotations

from pathlib import Path

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.reporting.page import render, write_report
from pipeline.reporting.profile import BatchProfile, reference_profile
from pipeline.tracking.registry import model_quality
from pipeline.world.generate import generate_frame
from pipeline.world.network import compile_model

REFERENCE_ROWS = 20_000
REFERENCE_SEED = 20_261_124


def training_population(run_id: str) -> str:
    """The population the model's training data came from (its run's `data.population`)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_run(run_id).data.params.get("data.population", "general") if run_id else "general"
    except MlflowException:
        return "general"


def start_profile(kb: KnowledgeBase, run_id: str) -> tuple[BatchProfile, BatchProfile]:
    """(an empty profile for the batch, the reference profile of the training population)."""
    population = training_population(run_id)
    if population not in kb.populations:
        population = "general"
    sample = generate_frame(compile_model(kb, population), REFERENCE_ROWS, REFERENCE_SEED)
    reference = reference_profile(kb, sample)
    return BatchProfile(kb, reference.edges), reference


def finish_report(
    path: Path, profile: BatchProfile, reference: BatchProfile, *, source: str, loaded, seconds: float
) -> None:
    """Render the page and write it atomically."""
    page = render(
        profile,
        reference,
        source=source,
        version=loaded.version,
        uri=loaded.uri,
        quality=model_quality(getattr(loaded, "run_id", "")),
        seconds=seconds,
    )
    write_report(path, page)
