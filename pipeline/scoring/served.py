"""The served contract (docs/intake-form.md, "The served model"): a frame of intake forms in,
one output row per input row, in input order and with the input's index: the scores-file
columns plus `reject_reason` (empty for a scored row; for a rejected row, the reasons, with the
probabilities and the triage columns null). The same intake path and `score_chunk` as the batch
scorer, so the two agree on every row. Nulls are None, never NaN, so JSON responses are strict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.intake.header import column_key
from pipeline.intake.outputs import neutralize_formulas
from pipeline.intake.stream import iter_validated
from pipeline.scoring.score import score_chunk

REJECT_REASON = "reject_reason"


def served_columns(kb: KnowledgeBase, explain: bool = False) -> list[str]:
    return [*kb.schema.output_columns(explain), REJECT_REASON]


def reject_reasons(rejects: pd.DataFrame) -> pd.Series:
    """One text per rejected row: `field: reason (value 'x')`, several joined by ' | '."""
    if rejects.empty:
        return pd.Series(dtype="str")
    lines = rejects["field"].where(rejects["field"] != "", "row") + ": " + rejects["reason"]
    lines = lines + " (value '" + rejects["value"].astype(str) + "')"
    return lines.groupby(rejects["row"].to_numpy(), sort=True).agg(" | ".join)


def served_frame(forms: pd.DataFrame, model, kb: KnowledgeBase, version: str, explainer=None) -> pd.DataFrame:
    """Score a frame of intake forms as the served model does; rows keep their order and index.

    With an `explainer` (pipeline.scoring.explain), the explanation columns too, as `score --explain`.
    """
    schema = kb.schema
    frame = forms.reset_index(drop=True)
    if schema.id_column not in {column_key(str(name)) for name in frame.columns}:  # `Record ID` names it too
        frame[schema.id_column] = [f"row-{i + 1}" for i in range(len(frame))]
    n = len(frame)
    columns = served_columns(kb, explain=explainer is not None)
    out = pd.DataFrame({c: pd.Series([None] * n, dtype=object) for c in columns})
    out[REJECT_REASON] = ""
    out["model_version"] = version
    for chunk in iter_validated(frame, schema):
        if len(chunk.typed):
            scores = score_chunk(chunk.typed, model, kb, version, explainer).to_pandas()
            positions = chunk.typed.index.to_numpy() - 1
            for column in scores.columns:
                out.loc[positions, column] = scores[column].to_numpy(dtype=object)
        if len(chunk.rejects):
            reasons = reject_reasons(chunk.rejects)
            positions = reasons.index.to_numpy() - 1
            out.loc[positions, REJECT_REASON] = reasons.to_numpy(dtype=object)
            raw_ids = chunk.raw.column(chunk.raw.column_names.index(schema.id_column)).to_numpy(zero_copy_only=False)
            ids = neutralize_formulas(pa.array(raw_ids[positions].astype(str)), schema).to_pylist()
            out.loc[positions, schema.id_column] = np.asarray(ids, dtype=object)
    out.index = forms.index
    return out
