"""Logging a fitted model to MLflow as the project's pyfunc, and registering it.

The pyfunc is models-from-code (pipeline/tracking/pyfunc.py) with the estimator in a skops
file beside it; the metadata names the schema, the input columns and the outputs so a scorer
can refuse a model made for another contract. The input example is synthetic, never patient data.

Beside the estimator goes its compact scoring form (`scoring.npz`, pipeline/scoring/compact.py),
when the model has one and it reproduces the model's probabilities on the given rows to 1e-9:
the batch scorer reads that instead of the pyfunc. The pyfunc ignores it and stays the source
of truth.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import Schema
from pipeline.intake.frames import columns_from_frame, csv_table_from_columns
from pipeline.tracking.persistence import save_model
from pipeline.tracking.registry import REGISTERED_MODEL
from pipeline.tracking.store import pip_requirements

PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")
COMPACT_TOLERANCE = 1e-9  # largest difference from the model's own probabilities a compact form may have
COMPACT_CHECK_ROWS = 20_000


def intake_example(frame: pd.DataFrame, schema: Schema, n: int = 5) -> pd.DataFrame:
    """Synthetic rows in the plain intake form (strings, numbers, None for blanks)."""
    head = frame.head(n).reset_index(drop=True)
    return csv_table_from_columns(columns_from_frame(head, schema), schema).to_pandas()


def served_signature():
    """Params only: `explain` (default false) adds `reasons` and `ask_next` to the served columns."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    return ModelSignature(params=ParamSchema([ParamSpec("explain", "boolean", False)]))


def compact_scoring_file(model, rows: pd.DataFrame, path: Path) -> Path | None:
    """Write the model's compact scoring form to `path` if it has one that, read back from the file,
    gives the model's own probabilities on `rows` to COMPACT_TOLERANCE; None (with a warning) otherwise."""
    from pipeline.scoring.compact import CompactModel

    if not hasattr(model, "compact_form"):
        return None
    try:
        form = model.compact_form()
    except ValueError as err:  # a family or calibration without a compact form: scored in full
        warnings.warn(f"no compact scoring form: {err}", stacklevel=2)
        return None
    form.save(path)
    check = rows.head(COMPACT_CHECK_ROWS)
    gap = float(np.max(np.abs(CompactModel.load(path).predict_proba(check) - model.predict_proba(check)), initial=0.0))
    if not gap <= COMPACT_TOLERANCE:
        warnings.warn(f"compact scoring form left out: it differs from the model by {gap:.1e}", stacklevel=2)
        path.unlink()
        return None
    return path


def log_and_register(model, kb: KnowledgeBase, example: pd.DataFrame, workdir: Path) -> str:
    """Log `model` as the pyfunc in the active run, register it; returns the registered version.

    `example` are synthetic typed rows: the input example comes from their head, and the compact
    scoring form is checked against the model on them."""
    import mlflow

    schema = kb.schema
    model_file = save_model(model, Path(workdir) / "cause_model.skops")
    artifacts = {"model": str(model_file)}
    compact = compact_scoring_file(model, example, Path(workdir) / "scoring.npz")
    if compact is not None:
        artifacts["scoring"] = str(compact)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts=artifacts,
        # No input schema: MLflow's type enforcement would reject what the contract accepts (a
        # nullable integer column with gaps) and a schema of `Any` columns breaks CSV bodies; the
        # model's own validation is the one that counts. The input example and `inputs` list the
        # columns. The signature declares only the `explain` parameter (MLflow drops undeclared ones).
        signature=served_signature(),
        input_example=intake_example(example, schema),
        pip_requirements=pip_requirements(),
        registered_model_name=REGISTERED_MODEL,
        metadata={
            "schema_version": schema.version,
            "schema_sha256": schema.sha256,
            "kb_sha256": kb.sha256,
            "inputs": list(schema.intake_columns),
            "outputs": list(schema.probability_columns),
            "served_columns": [*schema.scores_columns, "reject_reason"],
            "served_columns_explain": [*schema.output_columns(explain=True), "reject_reason"],
            "note": "decision support on synthetic data, not a diagnosis",
        },
    )
    return str(info.registered_model_version)
