"""`score --explain`: the `reasons` and `ask_next` columns (docs/intake-form.md, contract version 2).

`reasons` cites, for each top condition, the answered fields that raised its probability most
and the one that lowered it most, from the scoring model's own exact attributions (the model's
`attributions(typed)`: per row, condition and intake field, on the calibrated logit scale;
pipeline.learning.explain). Calibration is monotone, so a field that raised the logit raised
the probability. `ask_next` comes from a callable given by the caller (the knowledge base's
value of information, pipeline.world.value_of_information): scoring does not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.contract.schema import Schema


class ExplainError(ValueError):
    """The model cannot explain its scores (another family, or trained before explanations)."""


def reasons_column(
    attributions: np.ndarray,
    answered: np.ndarray,
    top: list[list[str]],
    conditions: list[str],
    fields: list[str],
    n_up: int = 3,
    n_down: int = 1,
    separator: str = " | ",
) -> list[str]:
    """Per row, for each top condition: `condition: +field, +field, -field` (answered fields only).

    `attributions` is (rows, conditions, fields); `answered` (rows, fields) is True where the
    form gave the field. A field is cited with + only if it raised the condition and with -
    only if it lowered it; ties keep the fields' order.
    """
    cond_index = {c: i for i, c in enumerate(conditions)}
    rows = []
    for r, names in enumerate(top):
        parts = []
        for name in names:
            a = np.where(answered[r], attributions[r, cond_index[name]], np.nan)
            filled = np.nan_to_num(a, nan=0.0)
            up_order = np.argsort(-filled, kind="stable")[:n_up]
            down_order = np.argsort(filled, kind="stable")[:n_down]
            up = [f"+{fields[k]}" for k in up_order if filled[k] > 0]
            down = [f"-{fields[k]}" for k in down_order if filled[k] < 0]
            parts.append(f"{name}: " + ", ".join(up + down))
        rows.append(separator.join(parts))
    return rows


class Explainer:
    """The explanation columns for a chunk of scored rows, for one model."""

    def __init__(self, model, schema: Schema, ask_next: Callable[[pd.DataFrame], list[list[str]]] | None = None):
        problem = model.explanation_problem() if hasattr(model, "explanation_problem") else "it has no attributions"
        if problem:
            raise ExplainError(f"--explain cannot explain this model: {problem}")
        self.model, self.schema, self.ask_next = model, schema, ask_next

    def __call__(self, typed: pd.DataFrame, top: list[list[str]]) -> dict[str, pa.Array]:
        schema, ex = self.schema, self.schema.explain
        attributions, _ = self.model.attributions(typed)
        fields = list(self.model.fields_)
        answered = typed[fields].notna().to_numpy()
        reasons = reasons_column(
            attributions, answered, top, list(schema.conditions), fields,
            ex.reasons_up, ex.reasons_down, ex.reasons_separator,
        )  # fmt: skip
        asks = self.ask_next(typed) if self.ask_next is not None else [[] for _ in range(len(typed))]
        asked = [schema.list_separator.join(a[: ex.ask_next_max]) for a in asks]
        reasons_name, ask_name = ex.columns
        return {reasons_name: pa.array(reasons, pa.string()), ask_name: pa.array(asked, pa.string())}
