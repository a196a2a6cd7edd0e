"""The oracle for rows with many blank parents: Quickscore with the parents eliminated, not enumerated.

For a Quickscore subset T of a row's coupling factors (see pipeline.world.oracle), the term is

    coef(T) * sum over z of P(z, observed parents) * prod_c [(1 - pi_c(z)) + B_c(T) pi_c(z)],

B_c(T) = w_c Q_c(T), and each condition's factor reads only that condition's parents. So the
sum over the blank parents z is variable elimination over their factor graph
(pipeline.world.blanks), batched over "items" (the row's subsets T), with memory bounded by
chunking the items. From the same pass:

  P(C_c = 1, e) term:   B_c dZ/dB_c (Z is linear in each condition's factor), by the backward pass;
  no condition of cause g: Z with B_c = 0 for c in g, recomputing only the part of the tree below
                        the cause's conditions' common ancestor (a cause of one condition: Z - N_c).

Every sum over z is of positive terms; the signed sum over T is bounded as in the oracle, with
the elimination's rounding depth added. The sign-free fallback runs the same elimination with
one item per subset S of the conditions the row's coupling factors touch: condition c of the
active set gets A_c = [c not in S], B_c = [c in S] w_c, and coef(S) is the product of the
coupling factors given S, all positive.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.world.blanks import BlankGraph, blank_graph
from pipeline.world.elimination import BATCH, backward, forward, group_value, item_product
from pipeline.world.evidence import _BlankEvidence, cause_slices, subset_block
from pipeline.world.network import CompiledModel

ITEM_BUDGET_BYTES = 64 * 2**20  # memory for one batch of items (forward values and gradients)


def _items_per_batch(graph: BlankGraph, n_conditions: int, dtype) -> int:
    per_item = (3 * graph.plan.item_entries + 6 * n_conditions + 16) * np.dtype(dtype).itemsize
    return max(1, ITEM_BUDGET_BYTES // per_item)


def _item_sums(graph: BlankGraph, a: np.ndarray | None, b: np.ndarray, item_row: np.ndarray, causes, dtype):
    """Per item: Z, the marginal numerators (C, items) and 'no condition of cause' (G, items).

    Condition c's item leaf is a_c (1 - pi_c) + b_c pi_c (a = None means a_c = 1).
    """
    plan, n = graph.plan, len(item_row)
    rows = [leaf.astype(dtype) for leaf in graph.row_leaves]
    pis = [np.take(p, item_row, axis=-1).astype(dtype) for p in graph.pi]
    keeps = [1 - p if a is None else a[c] * (1 - p) for c, p in enumerate(pis)]
    values = forward(plan, rows + [k + b[c] * p for c, (k, p) in enumerate(zip(keeps, pis, strict=True))], item_row)
    z = item_product(plan, values, n, dtype=dtype)
    grads, kept = backward(plan, values, item_row)
    numer = np.empty((len(pis), n), dtype=dtype)
    for c, p in enumerate(pis):
        labels = [*plan.scopes[plan.item_leaf(c)], BATCH]
        numer[c] = b[c] * np.einsum(grads.pop(plan.item_leaf(c)), labels, p, labels, [BATCH])
    none = np.empty((len(causes), n), dtype=dtype)
    group = 0
    for g, sl in enumerate(causes):
        if sl.stop - sl.start == 1:  # Z is linear in the condition's leaf: Z = none + numerator
            none[g] = z - numer[sl.start]
            continue
        changed = {plan.item_leaf(c): keeps[c] for c in range(sl.start, sl.stop)}
        none[g] = group_value(plan, values, kept, group, changed, item_row)
        group += 1
    return z, numer, none


def _single_condition_causes(p_cond: np.ndarray, p_cause: np.ndarray, causes) -> None:
    """A cause of one condition is that condition: the same number, not a rounding apart."""
    for g, sl in enumerate(causes):
        if sl.stop - sl.start == 1:
            p_cause[..., g] = p_cond[..., sl.start]


def elimination_quickscore(model: CompiledModel, ev: _BlankEvidence, dtype=np.float64):
    """Marginals by Quickscore over eliminated parents: (p_conditions, p_causes, error bound) per row."""
    n, n_c = ev.n_rows, model.n_conditions
    causes = cause_slices(model.cause_matrix)
    one_minus_link = 1.0 - ev.link.T  # (J, C)
    k_row = ev.k_row
    total = np.zeros(n, dtype=dtype)
    abs_total = np.zeros(n, dtype=dtype)
    numer = np.zeros((n, n_c), dtype=dtype)
    none = np.zeros((n, len(causes)), dtype=dtype)
    depth = np.zeros(n)
    for k in np.unique(k_row):
        rows_k = np.flatnonzero(k_row == k)
        order = np.argsort(~ev.used[rows_k], axis=1, kind="stable")[:, :k]
        v = one_minus_link[order].astype(dtype)  # (n_k, k, C)
        ak = np.take_along_axis(ev.a[rows_k], order, axis=1).astype(dtype)
        bk = np.take_along_axis(ev.b[rows_k], order, axis=1).astype(dtype)
        graph = blank_graph(model, ev.typed.iloc[rows_k], ev.codes[rows_k])
        n_t = 1 << int(k)
        budget = _items_per_batch(graph, n_c, dtype)
        t_block = n_t if n_t <= budget else 1 << int(math.log2(budget))
        r_block = max(1, budget // t_block)
        depth[rows_k] = graph.plan.rounding_depth + n_t // t_block
        for r0 in range(0, len(rows_k), r_block):
            local = np.arange(r0, min(r0 + r_block, len(rows_k)))
            rows = rows_k[local]
            sub = graph.take(local)
            item_row = np.repeat(np.arange(len(local)), t_block)
            w = ev.w[rows].astype(dtype)
            for t0 in range(0, n_t, t_block):
                q, coef = subset_block(v[local], ak[local], bk[local], t0, t_block, dtype)
                bq = (w[:, :, None] * q).transpose(1, 0, 2).reshape(n_c, -1)  # (C, items), row-major items
                z, num, nn = _item_sums(sub, None, bq, item_row, causes, dtype)
                term = coef * z.reshape(len(local), t_block)
                total[rows] += term.sum(axis=1)
                abs_total[rows] += np.abs(term).sum(axis=1)
                numer[rows] += (coef[None] * num.reshape(n_c, len(local), t_block)).sum(axis=2).T
                none[rows] += (coef[None] * nn.reshape(len(causes), len(local), t_block)).sum(axis=2).T

    # As in the oracle's bound: an item leaf carries at most k + 5 roundings (Q_c, B_c, the leaf),
    # the elimination adds its depth (all its sums positive), coef k, the pairwise sum over the
    # subsets 16 + k and the sequential sum over blocks of subsets one per block.
    eps = np.finfo(dtype).eps
    gamma = (n_c * (k_row + 5) + 3 * k_row + 48 + depth) * eps
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(total > 0, 2 * gamma * abs_total / total, np.inf)
        p_cond = np.clip(numer / total[:, None], 0.0, 1.0)
        p_cause = np.clip(1.0 - none / total[:, None], 0.0, 1.0)
    _single_condition_causes(p_cond, p_cause, causes)
    return p_cond.astype(float), p_cause.astype(float), bound.astype(float)


def elimination_enumerated_row(model: CompiledModel, ev: _BlankEvidence, r: int):
    """Marginals of row r with one item per subset of the conditions its coupling factors
    touch: every term positive, so nothing cancels."""
    n_c = model.n_conditions
    causes = cause_slices(model.cause_matrix)
    jj = np.flatnonzero(ev.used[r])
    active = np.flatnonzero((ev.link[:, jj] > 0).any(axis=1))
    m = len(active)
    graph = blank_graph(model, ev.typed.iloc[[r]], ev.codes[[r]])
    log_v = np.log(1.0 - ev.link[np.ix_(active, jj)]).T  # (k, m)
    a, b, w = ev.a[r, jj], ev.b[r, jj], ev.w[r]
    # Scale coef by its largest possible value (each factor is monotone in q in [q_min, 1]).
    q_min = np.exp(log_v.sum(axis=1))
    log_scale = np.log(np.maximum(a + b, a + b * q_min)).sum()
    block = 1 << int(math.log2(_items_per_batch(graph, n_c, np.float64)))
    total, numer, none = 0.0, np.zeros(n_c), np.zeros(len(causes))
    for lo in range(0, 1 << m, block):
        ids = np.arange(lo, min(lo + block, 1 << m))
        subset = ((ids[:, None] >> np.arange(m)) & 1).astype(float)  # (s, m)
        coef = np.exp(np.log(a + b * np.exp(subset @ log_v.T)).sum(axis=1) - log_scale)  # (s,), all > 0
        big_a = np.ones((n_c, len(ids)))
        big_b = np.repeat(w[:, None], len(ids), axis=1)
        big_a[active] = 1.0 - subset.T
        big_b[active] *= subset.T
        z, num, nn = _item_sums(graph, big_a, big_b, np.zeros(len(ids), dtype=np.int64), causes, np.float64)
        total += coef @ z
        numer += num @ coef
        none += nn @ coef
    eps = np.finfo(float).eps
    depth = graph.plan.rounding_depth + 5 * n_c + m + len(jj) + (1 << m) // block
    bound = 4 * (depth + 64) * eps
    p_cond, p_cause = np.clip(numer / total, 0, 1), np.clip(1 - none / total, 0, 1)
    _single_condition_causes(p_cond, p_cause, causes)
    return p_cond, p_cause, bound
