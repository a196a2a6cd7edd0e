"""Red flags, triage level, top conditions and specialists from the knowledge base's rules.

The rules are data (data/knowledge_base.yaml, `red_flags`, `triage_default`, `specialists`);
this module applies them to a chunk of typed rows and their probabilities, vectorised. A red
flag sets the most pressing level among those that fire; with none, the level is the
knowledge base's default (routine), or self-care where the form shows a benign presentation.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.rules import rule_holds


def _join(columns: list[pa.Array], separator: str) -> pa.Array:
    """Join string columns row-wise, skipping nulls; rows with nothing become empty strings.

    (pyarrow's null_handling="skip" drops rows whose inputs are all null, so nulls are joined
    as empty strings and the doubled separators removed; names never contain the separator.)
    """
    joined = pc.binary_join_element_wise(*columns, separator, null_handling="replace", null_replacement="")
    sep = re.escape(separator)
    joined = pc.replace_substring_regex(joined, f"{sep}{{2,}}", separator)
    return pc.replace_substring_regex(joined, f"^{sep}|{sep}$", "")


def _named_where(mask: np.ndarray, name: str) -> pa.Array:
    return pa.array(np.where(mask, name, None), pa.string())


def triage_columns(kb: KnowledgeBase, typed: pd.DataFrame, probs: pd.DataFrame) -> dict[str, pa.Array]:
    """top_conditions, triage, red_flags and specialists for each row."""
    schema = kb.schema
    sep = schema.list_separator
    n = len(typed)
    levels = list(schema.triage_levels)  # most pressing first

    cond = probs[[f"p_{c}" for c in schema.conditions]].to_numpy()
    order = np.argsort(-cond, axis=1, kind="stable")[:, : schema.top_conditions_max]
    names = np.array(schema.conditions, dtype=object)
    top = [
        pa.array(
            np.where(
                np.take_along_axis(cond, order[:, [k]], 1)[:, 0] >= schema.top_conditions_min_probability,
                names[order[:, k]],
                None,
            ),
            pa.string(),
        )
        for k in range(order.shape[1])
    ]

    level = np.full(n, len(levels))  # len(levels): no red flag has fired
    fired = []
    for flag in kb.red_flags:
        holds = rule_holds(flag.when, typed, probs)
        level = np.where(holds, np.minimum(level, levels.index(flag.triage)), level)
        fired.append(_named_where(holds, flag.name))
    default = kb.triage_default
    benign = rule_holds(default.self_care_when, typed, probs) & (cond.max(axis=1, initial=0) < default.not_self_care_at)
    fallback = np.where(benign, levels.index("self_care"), levels.index(default.level))
    level = np.where(level < len(levels), level, fallback)

    cause_p = probs[[f"p_cause_{c}" for c in schema.cause_names]].to_numpy()
    by_rank = np.argsort(-cause_p, axis=1, kind="stable")
    specialists = [pa.array(np.full(n, kb.specialist_first), pa.string())]
    seen = np.zeros((n, len(schema.specialists)), dtype=bool)
    seen[:, schema.specialists.index(kb.specialist_first)] = True
    for rank in range(len(schema.cause_names)):
        g = by_rank[:, rank]
        who = np.array([kb.specialist_by_cause[c] for c in schema.cause_names])[g]
        who_idx = np.array([schema.specialists.index(w) for w in who])
        take = (cause_p[np.arange(n), g] >= kb.specialist_threshold) & ~seen[np.arange(n), who_idx]
        seen[np.arange(n), who_idx] |= take
        specialists.append(pa.array(np.where(take, who, None), pa.string()))

    return {
        "top_conditions": _join(top, sep),
        "triage": pa.array(np.array(levels, dtype=object)[level], pa.string()),
        "red_flags": _join(fired, sep) if fired else pa.array([""] * n, pa.string()),
        "specialists": _join(specialists, sep),
    }
