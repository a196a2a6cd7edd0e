"""Batch scoring: intake forms in, a scores file and a rejects file out, nothing lost.

`score_chunk` is a pure function from typed rows to the scores columns (no I/O, no global
state), so a distributed engine can call it per partition; `score_file` owns streaming,
temporary files and the final rename.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import Schema
from pipeline.intake.outputs import CSV_OPTIONS, RejectsWriter, atomic_paths, default_rejects_path, neutralize_formulas
from pipeline.intake.reader import BLOCK_BYTES
from pipeline.intake.stream import iter_validated
from pipeline.scoring.background import ReadAhead, WriteBehind, blas_on_one_thread
from pipeline.scoring.triage import triage_columns

PROBABILITY_DECIMALS = 6
QUEUE_CHUNKS = 1  # chunks waiting between two stages (memory stays flat: a few chunks in all)


class ScoringModel(Protocol):
    """What scoring needs of a loaded model: the estimator and the version written beside its scores."""

    model: object  # has predict_proba(typed frame) -> (n, conditions + causes) probabilities
    version: str


def score_chunk(
    typed: pd.DataFrame, model, kb: KnowledgeBase, model_version: str, explainer=None, prepared=None
) -> pa.Table:
    """Scores for valid typed rows, in their order: the columns of the scores file.

    With an `explainer` (pipeline.scoring.explain.Explainer: typed rows and their top conditions
    in, the explanation columns out), the explanation columns too (`score --explain`). `prepared`:
    what `model.prepare(typed)` made, for a model that has it (see `score_file`).
    """
    schema = kb.schema
    p = model.predict_proba(typed) if prepared is None else model.predict_proba(typed, prepared=prepared)
    probs = pd.DataFrame(p, columns=list(schema.probability_columns), copy=False)  # read only from here on
    extra = triage_columns(kb, typed, probs)
    if explainer is not None:
        sep = schema.list_separator
        top = [t.split(sep) if t else [] for t in extra["top_conditions"].to_pylist()]
        extra.update(explainer(typed, top))
    arrays = {schema.id_column: neutralize_formulas(_text(typed[schema.id_column]), schema)}
    rounded = np.array(p.T, order="C")  # one row per column (a copy: rounded in place)
    rounded = np.round(rounded, PROBABILITY_DECIMALS, out=rounded)
    arrays.update({name: pa.array(rounded[j]) for j, name in enumerate(schema.probability_columns)})
    arrays.update(extra)
    arrays["model_version"] = pa.array([model_version], pa.string()).take(pa.array(np.zeros(len(typed), np.int32)))
    out_schema = scores_arrow_schema(schema, explain=explainer is not None)
    return pa.Table.from_arrays([arrays[c] for c in out_schema.names], schema=out_schema)


def _text(column: pd.Series) -> pa.Array:
    """A text column as Arrow strings (without a detour through Python objects when it is Arrow already)."""
    values = column.array
    text = pa.array(values) if hasattr(values, "__arrow_array__") else pa.array(column.to_numpy(), pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return text.cast(pa.string())


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
def sigterm_as_interrupt():
    """Make SIGTERM unwind like Ctrl-C, so temporary files are removed."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def scores_arrow_schema(schema: Schema, explain: bool = False) -> pa.Schema:
    """The scores file's columns (from the schema): probabilities as numbers, the rest text."""
    probabilities = set(schema.probability_columns)
    columns = schema.output_columns(explain)
    return pa.schema([(c, pa.float64() if c in probabilities else pa.string()) for c in columns])


def _prepared(chunks: ReadAhead, model) -> ReadAhead:
    """(chunk, what `model.prepare` made of its typed rows) for each chunk: made a chunk ahead in a
    thread of its own for a model that needs it (the knowledge base's posterior features, the
    costliest step of such a model), else None."""
    if not getattr(model, "needs_preparing", False):
        return _Paired(chunks)

    def prepare() -> Iterator:
        for chunk in chunks:
            yield chunk, (model.prepare(chunk.typed) if len(chunk.typed) else None)

    return ReadAhead(prepare(), depth=QUEUE_CHUNKS, name="score-prepare")


def _close_stages(reader: ReadAhead, chunks) -> None:
    """Stop the reading (and preparing) threads. The reader is told first: a prepare thread waiting
    for the reader's next chunk then ends at once too (told second, it once waited for good on a
    reader that had stopped without a last item)."""
    reader.stop()
    chunks.close()
    reader.close()


class _Paired:
    """Each chunk with None (nothing prepared), closed as the chunks are."""

    def __init__(self, chunks: ReadAhead):
        self._chunks = chunks

    def __iter__(self) -> Iterator:
        return ((chunk, None) for chunk in self._chunks)

    def close(self) -> None:
        self._chunks.close()


def score_file(
    input_path: Path | str,
    output: Path | BinaryIO,
    model: ScoringModel,
    kb: KnowledgeBase,
    rejects_path: Path | None = None,
    progress: bool | None = None,
    block_bytes: int = BLOCK_BYTES,
    read_options: dict | None = None,
    observers: tuple = (),
    explainer=None,
) -> ScoreSummary:
    """Stream the input in chunks; write scores and rejects; rename both into place at the end.

    `input_path` may be "-" (standard input); `output` a binary stream (e.g. standard output), which
    then receives the scores only once the whole input is scored (they are spooled to a temporary
    file first, so a failure writes nothing), and `rejects_path` is required. `read_options` are
    passed to the intake path (delimiter, decimal_comma, encoding). Each of `observers` is called
    with every validated chunk (its typed rows and rejects; not its raw cells, which are not kept)
    and its scores table (None when nothing in it was scored). With an
    `explainer`, the scores carry the explanation columns (see `score_chunk`).
    """
    start = time.perf_counter()
    schema = kb.schema
    to_stream = not isinstance(output, str | Path)
    if to_stream and rejects_path is None:
        raise ValueError("scores written to a stream need a rejects path")
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(Path(output))
    targets = [rejects_path] if to_stream else [Path(output), rejects_path]
    stream = iter_validated(input_path, schema, block_bytes=block_bytes, keep_raw=False, **(read_options or {}))
    progress = sys.stderr.isatty() if progress is None else progress
    read = scored = rejected = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit=" rows", unit_scale=True, desc="score", file=sys.stderr)
    with (
        sigterm_as_interrupt(),
        blas_on_one_thread(),
        atomic_paths(*targets) as temps,
        tempfile.TemporaryDirectory() as spool,
    ):
        tmp_out, tmp_rej = (Path(spool) / "scores.csv" if to_stream else temps[0]), temps[-1]
        out_schema = scores_arrow_schema(schema, explain=explainer is not None)
        scores_writer = pacsv.CSVWriter(tmp_out, out_schema, write_options=CSV_OPTIONS)
        rejects_writer = RejectsWriter(tmp_rej, schema)

        def write(item: tuple[pd.DataFrame, pa.Table | None]) -> None:
            rejects, scores = item
            rejects_writer.write(rejects)
            if scores is not None:
                scores_writer.write_table(scores)

        # the next chunk is read and validated, and the previous one written, while this one is scored
        reader = ReadAhead(stream, depth=QUEUE_CHUNKS, name="score-read")
        chunks = _prepared(reader, model.model)
        writer = WriteBehind(write, depth=QUEUE_CHUNKS, name="score-write")
        try:
            for chunk, prepared in chunks:
                scores = None
                if len(chunk.typed):
                    scores = score_chunk(chunk.typed, model.model, kb, model.version, explainer, prepared)
                writer.put((chunk.rejects, scores))
                for observe in observers:
                    observe(chunk, scores)
                read += chunk.rows_read
                scored += len(chunk.typed)
                rejected += chunk.rows_rejected
                if bar is not None:
                    bar.update(chunk.rows_read)
            writer.finish()
        finally:
            _close_stages(reader, chunks)
            writer.abandon()
            scores_writer.close()
            rejects_writer.close()
            if bar is not None:
                bar.close()
        if to_stream:  # the whole input is scored: only now do the scores go out
            with open(tmp_out, "rb") as spooled:
                shutil.copyfileobj(spooled, output)
            output.flush()
    return ScoreSummary(read, scored, rejected, time.perf_counter() - start, stream.warnings)
