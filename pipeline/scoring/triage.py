"""Red flags, triage level, top conditions and specialists from the knowledge base's rules.

The rules are data (data/knowledge_base.yaml, `red_flags`, `triage_default`, `specialists`);
this module applies them to a chunk of typed rows and their probabilities, vectorised. A red
flag sets the most pressing level among those that fire; with none, the level is the
knowledge base's default (routine), or self-care where the form shows a benign presentation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.rules import rule_holds


class _Columns(dict):
    """A frame's columns as arrays, each taken out of the frame once, when a rule first reads it."""

    def __init__(self, frame: pd.DataFrame):
        super().__init__()
        self.frame = frame

    def __missing__(self, name: str) -> np.ndarray | pd.Categorical:
        column = self.frame[name]  # a category field stays a Categorical: rules test its codes
        self[name] = value = column.array if isinstance(column.dtype, pd.CategoricalDtype) else column.to_numpy()
        return value


def _joined(picked: np.ndarray, names: list[str], separator: str) -> pa.Array:
    """Each row's picked names joined in column order: `picked` is (rows, k) indices into `names`,
    -1 for none. A row is reduced to one integer first, so each distinct list is joined once."""
    n, k = picked.shape
    if n == 0:
        return pa.array([], pa.string())
    base = len(names) + 1
    key = np.zeros(n, dtype=np.int64)
    for j in range(k):  # base ** k stays below 2 ** 63 for the lists here (k <= 10, base <= 32)
        key = key * base + (picked[:, j] + 1)
    distinct, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    known = _JOINED.setdefault((tuple(names), separator), {})
    if len(known) > _JOINED_MAX:
        known.clear()
    texts = []
    for value, row in zip(distinct.tolist(), first.tolist(), strict=True):
        text = known.get(value)
        if text is None:
            text = known[value] = separator.join(names[i] for i in picked[row] if i >= 0)
        texts.append(text)
    return pa.array(texts, pa.string()).take(pa.array(inverse.reshape(-1).astype(np.int32)))


_JOINED: dict[tuple, dict[int, str]] = {}  # the joined text of each list seen, per list of names
_JOINED_MAX = 100_000


def _likeliest(p: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column indices of each row's k largest values, largest first, ties by column:
    the first k of a stable sort of -p, found by k passes of argmax (which takes the first of ties)."""
    k = min(k, p.shape[1])
    if np.isnan(p).any():  # argmax would take a NaN for the largest
        return np.argsort(-p, axis=1, kind="stable")[:, :k]
    rest, rows = p.copy(), np.arange(len(p))
    out = np.empty((len(p), k), dtype=np.int64)
    for j in range(k):
        out[:, j] = np.argmax(rest, axis=1)
        rest[rows, out[:, j]] = -np.inf
    return out


def triage_columns(kb: KnowledgeBase, typed: pd.DataFrame, probs: pd.DataFrame) -> dict[str, pa.Array]:
    """top_conditions, triage, red_flags and specialists for each row."""
    schema = kb.schema
    sep = schema.list_separator
    n = len(typed)
    levels = list(schema.triage_levels)  # most pressing first
    names = list(schema.probability_columns)
    # the columns rules read, as one array (a scorer's frame is exactly these: a view of its one block)
    values = (probs if list(probs.columns) == names else probs[names]).to_numpy()
    at = {name: j for j, name in enumerate(names)}
    fields, probabilities = _Columns(typed), {name: values[:, j] for name, j in at.items()}

    cond = values[:, [at[f"p_{c}"] for c in schema.conditions]]
    order = _likeliest(cond, schema.top_conditions_max)
    shown = np.take_along_axis(cond, order, 1) >= schema.top_conditions_min_probability
    top = np.where(shown, order, -1)

    level = np.full(n, len(levels))  # len(levels): no red flag has fired
    fired = np.full((n, len(kb.red_flags)), -1)
    for f, flag in enumerate(kb.red_flags):
        holds = rule_holds(flag.when, fields, probabilities)
        level = np.where(holds, np.minimum(level, levels.index(flag.triage)), level)
        fired[holds, f] = f
    default = kb.triage_default
    benign = rule_holds(default.self_care_when, fields, probabilities)
    benign &= cond.max(axis=1, initial=0) < default.not_self_care_at
    fallback = np.where(benign, levels.index("self_care"), levels.index(default.level))
    level = np.where(level < len(levels), level, fallback)

    cause_p = values[:, [at[f"p_cause_{c}"] for c in schema.cause_names]]
    by_rank = np.argsort(-cause_p, axis=1, kind="stable")
    specialist_of = np.array([schema.specialists.index(kb.specialist_by_cause[c]) for c in schema.cause_names])
    rows = np.arange(n)
    seen = np.zeros((n, len(schema.specialists)), dtype=bool)
    first = schema.specialists.index(kb.specialist_first)
    seen[:, first] = True
    specialists = np.full((n, len(schema.cause_names) + 1), -1)
    specialists[:, 0] = first
    for rank in range(len(schema.cause_names)):
        g = by_rank[:, rank]
        who = specialist_of[g]
        take = (cause_p[rows, g] >= kb.specialist_threshold) & ~seen[rows, who]
        seen[rows, who] |= take
        specialists[:, rank + 1] = np.where(take, who, -1)

    return {
        "top_conditions": _joined(top, list(schema.conditions), sep),
        "triage": pa.array(np.array(levels, dtype=object)[level], pa.string()),
        "red_flags": _joined(fired, [f.name for f in kb.red_flags], sep),
        "specialists": _joined(specialists, list(schema.specialists), sep),
    }
