"""Brute-force posterior for tests: every completion of the blank parents times every one of
the 2^C condition sets, each likelihood computed straight from its definition (noisy-OR with
a leak, the two-component lab distributions). Slow, obviously right, independent of the
oracle's Quickscore, folding and fallbacks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.special import expit

from pipeline.world.evidence import finding_states, parent_codes
from pipeline.world.network import CompiledModel, lab_bin_probability


def brute_force_posterior(model: CompiledModel, row: pd.DataFrame, block: int = 1 << 16) -> np.ndarray:
    """p_<condition> then p_cause_<cause> for a one-row typed frame."""
    schema = model.kb.schema
    n_c = model.n_conditions
    codes = parent_codes(model, row)[0]
    states = finding_states(model, row)[0]
    blank = [v for v in range(len(codes)) if codes[v] < 0]
    age = row["age"].to_numpy(dtype=float)
    lab_values = {lab.name: float(row[lab.name].iloc[0]) for lab in (*model.kb.labs, model.kb.duration)}

    log_joint_parts, marg_parts, none_parts = [], [], []
    for values in itertools.product(*(range(model.parent_vars[v].cardinality) for v in blank)):
        full = codes.copy()
        full[blank] = values
        x = model.features(age, full[None, :])
        log_w = float(model.parent_log_prob(x, full[None, :])[0])
        for lab in model.parent_labs:
            y = lab_values[lab.name]
            if not np.isnan(y):
                col = schema.column(lab.name)
                on = full[model.var_index(lab.parent)] == 1
                log_w += float(np.log(lab_bin_probability(lab, np.array([y]), on, col.min, col.max)[0]))
        pi = expit(model.condition_logits(x))[0]
        for start in range(0, 1 << n_c, block):
            ids = np.arange(start, min(start + block, 1 << n_c))
            s = ((ids[:, None] >> np.arange(n_c)) & 1).astype(float)
            log_p = s @ np.log(pi) + (1 - s) @ np.log1p(-pi) + log_w
            # P(finding absent | S) = (1 - leak) prod_{c in S} (1 - p_c), for all findings at once
            absent = (1 - model.finding_leak) * np.exp(s @ np.log1p(-model.finding_link))
            seen = ~np.isnan(states)
            log_p += np.log(np.where(states[seen] == 0, absent[:, seen], 1 - absent[:, seen])).sum(1)
            normal = (1 - model.lab_leak) * np.exp(s @ np.log1p(-model.lab_link))
            for j, lab in enumerate(model.labs):
                y = lab_values[lab.name]
                if np.isnan(y):
                    continue
                col = schema.column(lab.name)
                g_abn = lab_bin_probability(lab, np.array([y]), True, col.min, col.max)[0]
                g_norm = lab_bin_probability(lab, np.array([y]), False, col.min, col.max)[0]
                log_p += np.log(g_abn * (1 - normal[:, j]) + g_norm * normal[:, j])
            log_joint_parts.append(log_p)
            marg_parts.append(s)
            none_parts.append((s @ model.cause_matrix) == 0)
    log_p = np.concatenate(log_joint_parts)
    weight = np.exp(log_p - log_p.max())
    total = weight.sum()
    p_cond = weight @ np.concatenate(marg_parts) / total
    p_none = weight @ np.concatenate(none_parts) / total
    return np.concatenate([p_cond, 1 - p_none])
