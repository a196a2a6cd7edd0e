"""Batch scoring: an intake CSV in, a scores file and a rejects file out, nothing lost.

`score_chunk` is a pure function from typed rows to the scores columns (no I/O, no global
state), so a distributed engine can call it per partition; `score_file` owns streaming,
temporary files and the final rename.
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.knowledge import KnowledgeBase
from pipeline.outputs import atomic_paths, neutralize_formulas
from pipeline.reader import iter_raw_chunks, read_header
from pipeline.triage import triage_columns
from pipeline.validate import SeenIds, header_warnings, validate_table

PROBABILITY_DECIMALS = 6


class ModelMismatchError(ValueError):
    """The model was made for another schema version or label set."""


@dataclass
class LoadedModel:
    model: object  # a CauseModel
    version: str
    uri: str


def load_scoring_model(uri: str, kb: KnowledgeBase) -> LoadedModel:
    """Load a registered or local MLflow model and check it speaks this schema."""
    import mlflow
    from mlflow import MlflowClient

    pyfunc = mlflow.pyfunc.load_model(uri)
    meta = pyfunc.metadata.metadata or {}
    schema = kb.schema
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
    version = ""
    if uri.startswith("models:/"):
        name, _, rest = uri.removeprefix("models:/").partition("@")
        client = MlflowClient()
        if rest:
            version = str(client.get_model_version_by_alias(name, rest).version)
        else:
            name, _, ref = name.partition("/")
            if ref.isdigit():
                version = ref
            else:  # "latest" (or a legacy stage): the newest registered version
                version = str(max(int(v.version) for v in client.search_model_versions(f"name='{name}'")))
    return LoadedModel(pyfunc.unwrap_python_model().model, version or Path(uri).name, uri)


def score_chunk(typed: pd.DataFrame, model, kb: KnowledgeBase, model_version: str) -> pa.Table:
    """Scores for valid typed rows, in their order: the columns of the scores file."""
    schema = kb.schema
    probs = pd.DataFrame(model.predict_proba(typed), columns=list(schema.probability_columns))
    extra = triage_columns(kb, typed.reset_index(drop=True), probs)
    arrays = {schema.id_column: neutralize_formulas(pa.array(typed[schema.id_column].to_numpy(), pa.string()), schema)}
    for name in schema.probability_columns:
        arrays[name] = pa.array(np.round(probs[name].to_numpy(), PROBABILITY_DECIMALS))
    arrays.update(extra)
    arrays["model_version"] = pa.array(np.full(len(typed), model_version), pa.string())
    return pa.table(arrays)


def rejects_table(rejects: pd.DataFrame, kb: KnowledgeBase) -> pa.Table:
    schema = kb.schema
    return pa.table(
        {
            "row": pa.array(rejects["row"].to_numpy(dtype=np.int64)),
            "record_id": neutralize_formulas(
                pa.array(rejects["record_id"].astype(str).to_numpy(), pa.string()), schema
            ),
            "field": pa.array(rejects["field"].astype(str).to_numpy(), pa.string()),
            "value": neutralize_formulas(pa.array(rejects["value"].astype(str).to_numpy(), pa.string()), schema),
            "reason": pa.array(rejects["reason"].astype(str).to_numpy(), pa.string()),
        }
    )


@dataclass
class ScoreSummary:
    rows_read: int
    rows_scored: int
    rows_rejected: int
    seconds: float
    warnings: list[str]

    def line(self) -> str:
        rate = self.rows_read / self.seconds if self.seconds > 0 else 0.0
        return (
            f"rows read {self.rows_read:,}, scored {self.rows_scored:,}, rejected {self.rows_rejected:,}; "
            f"{self.seconds:.1f} s, {rate:,.0f} rows/s"
        )


@contextmanager
def _sigterm_as_interrupt():
    """Make SIGTERM unwind like Ctrl-C, so temporary files are removed."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_rejects_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.rejects.csv")


def score_file(
    input_path: Path,
    output: Path,
    loaded: LoadedModel,
    kb: KnowledgeBase,
    rejects_path: Path | None = None,
    progress: bool | None = None,
) -> ScoreSummary:
    """Stream the input in chunks; write scores and rejects; rename both into place at the end."""
    start = time.perf_counter()
    schema = kb.schema
    output = Path(output)
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(output)
    header = read_header(input_path)
    warnings = header_warnings(header, schema)
    progress = sys.stderr.isatty() if progress is None else progress
    first_seen = SeenIds()
    read = scored = rejected = 0
    quote = pacsv.WriteOptions(quoting_style="needed")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit=" rows", unit_scale=True, desc="score", file=sys.stderr)
    with _sigterm_as_interrupt(), atomic_paths(output, rejects_path) as (tmp_out, tmp_rej):
        scores_writer = pacsv.CSVWriter(tmp_out, _scores_schema(schema), write_options=quote)
        rejects_writer = pacsv.CSVWriter(tmp_rej, _rejects_schema(), write_options=quote)
        try:
            for chunk in iter_raw_chunks(input_path, header):
                result = validate_table(chunk.table, chunk.rows, schema, first_seen)
                bad = (
                    pd.concat([chunk.malformed, result.rejects], ignore_index=True)
                    if len(chunk.malformed)
                    else result.rejects
                )
                if len(bad):
                    rejects_writer.write_table(rejects_table(bad.sort_values("row", kind="stable"), kb))
                if len(result.typed):
                    scores_writer.write_table(score_chunk(result.typed, loaded.model, kb, loaded.version))
                read += chunk.table.num_rows + len(chunk.malformed)
                scored += len(result.typed)
                rejected += len(chunk.malformed) + result.rejects["row"].nunique()
                if bar is not None:
                    bar.update(chunk.table.num_rows + len(chunk.malformed))
        finally:
            scores_writer.close()
            rejects_writer.close()
            if bar is not None:
                bar.close()
    return ScoreSummary(read, scored, rejected, time.perf_counter() - start, warnings)


def _scores_schema(schema) -> pa.Schema:
    fields = [pa.field(schema.id_column, pa.string())]
    fields += [pa.field(name, pa.float64()) for name in schema.probability_columns]
    fields += [
        pa.field(name, pa.string())
        for name in ("top_conditions", "triage", "red_flags", "specialists", "model_version")
    ]
    return pa.schema(fields)


def _rejects_schema() -> pa.Schema:
    return pa.schema(
        [
            ("row", pa.int64()),
            ("record_id", pa.string()),
            ("field", pa.string()),
            ("value", pa.string()),
            ("reason", pa.string()),
        ]
    )
