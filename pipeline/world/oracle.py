"""The exact Bayes posterior of the generator's own model: the best any model could do.

For one row with observed fields o and condition set S:

    P(S, o) = sum over z of P(z, o_parents) * prod_c P(s_c | z) * P(o_findings | S)

where z ranges over the values of the blank person fields and risk factors (a blank is
"not asked", so it is marginalised). A row whose blanks have at most `ENUMERATE_AT_MOST`
joint completions (generated data, mostly) enumerates them; any other row sums them out by
variable elimination over their factor graph (pipeline.world.oracle_elimination), so memory
and time do not grow with the number of completions. Given z the conditions are
independent. Blank findings drop out. A negative finding factorises over conditions:
(1 - leak) * prod_{c in S} (1 - p_c). A positive finding is 1 - (1 - leak) prod (1 - p_c),
and an observed lab is g_abn + (g_norm - g_abn) (1 - leak) prod (1 - p_c) (g_* are the exact
probabilities of the rounded value). Each of these k "coupling" factors has the form
a_j + b_j q_j(S) with q_j factorising over conditions, so expanding their product over
the 2^k subsets T (Quickscore, Heckerman 1989) makes every term factorise:

    sum_S P(S | z) P(o | S) = sum_T coef(T) prod_c [(1 - pi_c) + pi_c w_c Q_c(T)]

with w_c the negative findings' factor and Q_c(T) = prod_{j in T} (1 - p_cj). Marginals
and "no condition of cause g" follow term by term. The result is exact up to floating
point; the signed sum can cancel, so each row reports a bound on the absolute error of
its probabilities, from the sum of absolute terms. Rows whose bound exceeds
`EXTENDED_PRECISION_ABOVE` are recomputed in extended precision (np.longdouble), and rows
still above `ENUMERATE_ABOVE` by summing every subset of the conditions their positive
findings touch, where all terms are positive. So every reported probability is within
ENUMERATE_ABOVE of the exact posterior, and the per-row bound says by how much at most.
Both treatments of the blank parents run these same steps (`_with_fallbacks`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pipeline.world.evidence import (
    _blank_evidence,
    _Evidence,
    _evidence,
    cause_slices,
    configuration_counts,
    parent_codes,
    subset_block,
)
from pipeline.world.network import CompiledModel
from pipeline.world.oracle_elimination import elimination_enumerated_row, elimination_quickscore

EXTENDED_PRECISION_ABOVE = 1e-7  # float64 bound above this: redo in np.longdouble
ENUMERATE_ABOVE = 1e-5  # longdouble bound still above this: redo by sign-free enumeration
TERM_BUDGET_BYTES = 48 * 2**20
# Rows whose blank parents have at most this many joint completions enumerate them; the rest
# sum them out by variable elimination (pipeline.world.oracle_elimination).
ENUMERATE_AT_MOST = 64
PAIRS_AT_MOST = 1 << 16  # completions enumerated at once: bounds the enumeration's memory
ERROR_COLUMN = "oracle_error_bound"


def _quickscore(pi: np.ndarray, u: np.ndarray, q: np.ndarray, coef: np.ndarray, causes: list[slice]):
    """Per pair: total R, marginal numerators N (P, C), 'no condition of cause' (P, G), sum |terms|.

    With z_c(T) = (1 - pi_c) + u_c Q_c(T) and r_c = (1 - pi_c) / z_c(T):
    term(T) = coef(T) prod_c z_c, N_c = sum_T term (1 - r_c), none_g = sum_T term prod_{c in g} r_c.
    Every sum over T runs along the contiguous last axis (pairwise summation).
    """
    keep = 1.0 - pi
    z = u[:, :, None] * q
    z += keep[:, :, None]
    term = coef * np.prod(z, axis=1)  # (P, T)
    ratio = np.divide(keep[:, :, None], z, out=z)  # (P, C, T)
    total = term.sum(axis=1)
    abs_total = np.abs(term).sum(axis=1)
    numer = total[:, None] - (term[:, None, :] * ratio).sum(axis=2)
    none = np.stack([(term * ratio[:, sl, :].prod(axis=1)).sum(axis=1) for sl in causes], axis=1)
    return total, numer, none, abs_total


def _quickscore_posterior(model: CompiledModel, ev: _Evidence, dtype=np.float64):
    """Marginals by Quickscore: (p_conditions, p_causes, error bound) per row."""
    n, n_c = ev.n_rows, model.n_conditions
    causes = cause_slices(model.cause_matrix)
    pi = ev.pi.astype(dtype)
    w = ev.w.astype(dtype)
    omega = np.exp(ev.log_omega).astype(dtype)
    one_minus_link = 1.0 - ev.link.T  # (J, C)
    k_row = ev.k_row

    total = np.zeros(n, dtype=dtype)
    abs_total = np.zeros(n, dtype=dtype)
    numer = np.zeros((n, n_c), dtype=dtype)
    none = np.zeros((n, len(causes)), dtype=dtype)
    blocks = np.ones(n)
    itemsize = np.dtype(dtype).itemsize
    for k in np.unique(k_row):
        rows_k = np.flatnonzero(k_row == k)
        order = np.argsort(~ev.used[rows_k], axis=1, kind="stable")[:, :k]
        v = one_minus_link[order].astype(dtype)  # (n_k, k, C)
        ak = np.take_along_axis(ev.a[rows_k], order, axis=1).astype(dtype)
        bk = np.take_along_axis(ev.b[rows_k], order, axis=1).astype(dtype)
        # Subsets in blocks and rows in batches, so that Q stays within the budget whatever k.
        n_t = 1 << int(k)
        t_block = min(n_t, 1 << int(np.log2(TERM_BUDGET_BYTES // (3 * n_c * itemsize))))
        r_block = max(1, TERM_BUDGET_BYTES // (n_c * t_block * itemsize))
        blocks[rows_k] = n_t // t_block
        for r0 in range(0, len(rows_k), r_block):
            batch = slice(r0, r0 + r_block)
            local = np.full(n, -1)
            local[rows_k[batch]] = np.arange(len(rows_k[batch]))
            pairs = np.flatnonzero(local[ev.pair_row] >= 0)
            for t0 in range(0, n_t, t_block):
                q, coef = subset_block(v[batch], ak[batch], bk[batch], t0, t_block, dtype)
                step = max(1, TERM_BUDGET_BYTES // max(q[0].nbytes * 3, 1))
                for start in range(0, len(pairs), step):
                    p = pairs[start : start + step]
                    rows = ev.pair_row[p]
                    u = pi[p] * w[rows]
                    r_tot, r_num, r_none, r_abs = _quickscore(pi[p], u, q[local[rows]], coef[local[rows]], causes)
                    om = omega[p]
                    np.add.at(total, rows, om * r_tot)
                    np.add.at(abs_total, rows, om * r_abs)
                    np.add.at(numer, rows, om[:, None] * r_num)
                    np.add.at(none, rows, om[:, None] * r_none)

    # Rigorous first-order bound. Each signed term is a product of at most C + k + 2
    # factors; sums over the 2^k terms are numpy's pairwise summation (blocks of 128 with
    # 8 accumulators, then pairwise), at most 16 + log2(2^k) roundings deep; the sum over
    # completions adds a few more, and each further block of subsets one.
    # |error of p| <= 2 gamma sum|terms| / total.
    eps = np.finfo(dtype).eps
    gamma = (n_c + 3 * k_row + 47 + blocks) * eps
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(total > 0, 2 * gamma * abs_total / total, np.inf)
        p_cond = np.clip(numer / total[:, None], 0.0, 1.0)
        p_cause = np.clip(1.0 - none / total[:, None], 0.0, 1.0)
    return p_cond.astype(float), p_cause.astype(float), bound.astype(float)


def _enumerated_row(model: CompiledModel, ev: _Evidence, r: int, block: int = 1 << 15):
    """Marginals of row r by summing every subset of the conditions its coupling factors touch.

    Every term is positive, so nothing cancels; conditions outside that set are independent
    given the completion and are summed in closed form.
    """
    causes = cause_slices(model.cause_matrix)
    jj = np.flatnonzero(ev.used[r])
    active = np.flatnonzero((ev.link[:, jj] > 0).any(axis=1))
    rest = np.setdiff1d(np.arange(model.n_conditions), active)
    m = len(active)
    pairs = np.flatnonzero(ev.pair_row == r)
    pi = ev.pi[pairs]
    u = pi * ev.w[r]
    keep = 1.0 - pi
    z_rest = keep[:, rest] + u[:, rest]
    log_odds = np.log(u[:, active]) - np.log(keep[:, active])  # (P, m)
    base = ev.log_omega[pairs] + np.log(keep[:, active]).sum(1) + np.log(z_rest).sum(1)
    log_v = np.log(1.0 - ev.link[np.ix_(active, jj)]).T  # (k, m)
    in_cause = [np.isin(active, np.arange(sl.start, sl.stop)) for sl in causes]

    run_max, total = -np.inf, 0.0
    numer_active = np.zeros(m)
    none_pairs = np.zeros((len(pairs), len(causes)))
    pair_mass = np.zeros(len(pairs))
    for lo in range(0, 1 << m, block):
        ids = np.arange(lo, min(lo + block, 1 << m))
        subset = ((ids[:, None] >> np.arange(m)) & 1).astype(float)  # (s, m)
        factors = ev.a[r, jj] + ev.b[r, jj] * np.exp(subset @ log_v.T)  # (s, k), all > 0
        log_t = base[:, None] + log_odds @ subset.T + np.log(factors).sum(1)[None, :]
        new_max = max(run_max, float(log_t.max()))
        shrink = np.exp(run_max - new_max) if np.isfinite(run_max) else 0.0
        t = np.exp(log_t - new_max)  # (P, s)
        total = total * shrink + t.sum()
        numer_active = numer_active * shrink + (t @ subset).sum(0)
        pair_mass = pair_mass * shrink + t.sum(1)
        empty = np.stack([subset[:, g].sum(1) == 0 for g in in_cause], axis=1).astype(float)
        none_pairs = none_pairs * shrink + t @ empty
        run_max = new_max

    p_cond = np.zeros(model.n_conditions)
    p_cond[active] = numer_active / total
    p_cond[rest] = (pair_mass @ (u[:, rest] / z_rest)) / total
    p_none = np.zeros(len(causes))
    ratio_rest = keep[:, rest] / z_rest
    for g, sl in enumerate(causes):
        outside = np.isin(rest, np.arange(sl.start, sl.stop))
        p_none[g] = none_pairs[:, g] @ ratio_rest[:, outside].prod(1) / total
    eps = np.finfo(float).eps
    bound = 4 * (m + len(jj) + model.n_conditions + 64) * eps
    return np.clip(p_cond, 0, 1), np.clip(1 - p_none, 0, 1), bound


def _active_counts(ev: _Evidence) -> np.ndarray:
    """Per row: how many conditions its coupling factors touch."""
    return ((ev.used.astype(float) @ (ev.link.T > 0)) > 0).sum(axis=1)


def _with_fallbacks(model: CompiledModel, frame: pd.DataFrame, build, quickscore, enumerated_row) -> np.ndarray:
    """Quickscore in float64, then for rows over the tolerance the cheaper of sign-free
    enumeration and extended-precision Quickscore, and enumeration for any row still over."""
    p_cond, p_cause, bound = quickscore(model, build(model, frame))
    redo = np.flatnonzero(bound > EXTENDED_PRECISION_ABOVE)
    if len(redo):
        ev = build(model, frame.iloc[redo])
        m, k = _active_counts(ev), ev.k_row
        # rough operation counts: enumeration 2^m (m + k); longdouble 2^k C, ~10x slower per op
        enumerate_first = 2.0**m * (m + k + 8) < 2.0**k * model.n_conditions * 40
        lc, lg, lb = (
            np.zeros((len(redo), model.n_conditions)),
            np.zeros((len(redo), len(model.causes))),
            np.full(len(redo), np.inf),
        )
        rest = np.flatnonzero(~enumerate_first)
        if len(rest):
            sub = build(model, frame.iloc[redo[rest]])
            lc[rest], lg[rest], lb[rest] = quickscore(model, sub, dtype=np.longdouble)
        for i in np.flatnonzero(enumerate_first | (lb > ENUMERATE_ABOVE)):
            lc[i], lg[i], lb[i] = enumerated_row(model, ev, int(i))
        p_cond[redo], p_cause[redo], bound[redo] = lc, lg, lb
    return np.column_stack([p_cond, p_cause, bound])


ENUMERATION = (_evidence, _quickscore_posterior, _enumerated_row)
ELIMINATION = (_blank_evidence, elimination_quickscore, elimination_enumerated_row)


def _chunk_posterior(model: CompiledModel, chunk: pd.DataFrame) -> np.ndarray:
    """Rows with few completions of their blank parents enumerate them jointly (in batches of at
    most PAIRS_AT_MOST completions); the others sum them out by variable elimination. Both run
    Quickscore with the same fallbacks."""
    counts = configuration_counts(model, parent_codes(model, chunk))
    enumerate_rows = np.flatnonzero(counts <= ENUMERATE_AT_MOST)
    batch = np.cumsum(counts[enumerate_rows]) // PAIRS_AT_MOST
    if len(enumerate_rows) == len(chunk) and batch.max(initial=0) == 0:
        return _with_fallbacks(model, chunk, *ENUMERATION)
    out = np.empty((len(chunk), model.n_conditions + len(model.causes) + 1))
    for b in np.unique(batch):
        rows = enumerate_rows[batch == b]
        out[rows] = _with_fallbacks(model, chunk.iloc[rows], *ENUMERATION)
    rows = np.flatnonzero(counts > ENUMERATE_AT_MOST)
    if len(rows):
        out[rows] = _with_fallbacks(model, chunk.iloc[rows], *ELIMINATION)
    return out


def posterior_probabilities(
    model: CompiledModel, typed: pd.DataFrame, chunk_rows: int = 2048, workers: int | None = None
) -> pd.DataFrame:
    """p_<condition>, p_cause_<cause> and the error bound for every row of a typed frame.

    Chunks run on `workers` threads (default: the CPU count); numpy releases the GIL in
    the heavy array work, so threads use every core without copying the frame.
    """
    schema = model.kb.schema
    chunks = [typed.iloc[s : s + chunk_rows] for s in range(0, len(typed), chunk_rows)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda c: _chunk_posterior(model, c), chunks))
    else:
        parts = [_chunk_posterior(model, c) for c in chunks]
    values = np.vstack(parts) if parts else np.zeros((0, len(schema.probability_columns) + 1))
    columns = [*schema.probability_columns, ERROR_COLUMN]
    return pd.DataFrame(values, columns=columns, index=typed.index)
