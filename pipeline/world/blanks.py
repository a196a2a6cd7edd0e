"""The blank parents of a group of rows as a factor graph, for variable elimination.

For the rows of a group, the pattern is the set of parents (person fields and risk factors)
blank in at least one of them; every other parent is observed in all of them and enters the
logits directly. A variable of the pattern observed in some row is pinned there by an
indicator folded into its own factor, so the rows share one plan. Row-level leaves, batch axis
last (see pipeline.world.elimination):

  one per pattern variable   its population prior (person field) or its logistic table given
                             its parents in the pattern (risk factor), times the indicator, times
                             the likelihood of a lab it drives (hba1c for diabetes);
  one per observed risk      P(its observed value | its parents in the pattern), when it has any;
    factor with blank parents

and, per condition, pi: P(condition | its parents in the pattern) on the same axes, from which
the caller builds the item-level leaf A (1 - pi) + B pi of each condition. The plan records
the common ancestor of each cause's conditions (causes of one condition need none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from pipeline.world.elimination import Plan, build_plan
from pipeline.world.evidence import cause_slices
from pipeline.world.network import CompiledModel, lab_bin_probability


@dataclass
class BlankGraph:
    """Factors over the blank parents of a group of rows (batch axis last, one entry per row)."""

    pattern: tuple[int, ...]  # global parent-variable ids, sorted; local variable i is pattern[i]
    plan: Plan
    row_leaves: list[np.ndarray]
    pi: list[np.ndarray]  # per condition: (*cards of its parents in the pattern, n)

    def take(self, rows: np.ndarray) -> BlankGraph:
        """The same graph for a subset of its rows."""
        return BlankGraph(
            self.pattern, self.plan, [f[..., rows] for f in self.row_leaves], [p[..., rows] for p in self.pi]
        )


def _parents(model: CompiledModel, weights: np.ndarray) -> list[list[int]]:
    """Per column of a (features, nodes) weight matrix: the parent variables it reads, sorted."""
    reads = np.zeros((len(model.parent_vars), weights.shape[1]), dtype=bool)
    for v, var in enumerate(model.parent_vars):
        fi = var.feature_index[var.feature_index >= 0]
        reads[v] = (weights[fi] != 0).any(axis=0)
    return [np.flatnonzero(reads[:, j]).tolist() for j in range(weights.shape[1])]


def _logit_table(model: CompiledModel, weights: np.ndarray, base: np.ndarray, scope: tuple[int, ...], pattern):
    """Logits (*cards of scope, n): the row's observed part plus each pattern parent's level weight."""
    table = base.reshape((1,) * len(scope) + (-1,))
    for axis, local in enumerate(scope):
        var = model.parent_vars[pattern[local]]
        level = np.where(var.feature_index >= 0, weights[np.maximum(var.feature_index, 0)], 0.0)
        shape = [1] * (len(scope) + 1)
        shape[axis] = var.cardinality
        table = table + level.reshape(shape)
    return table


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A (card, n) array reshaped to lie along `axis` of an ndim-dimensional table (batch last)."""
    shape = [1] * ndim
    shape[axis] = values.shape[0]
    shape[-1] = values.shape[1]
    return values.reshape(shape)


def _parent_lab_likelihood(model: CompiledModel, typed: pd.DataFrame, parent: int) -> np.ndarray | None:
    """(2, n) likelihood of the labs the risk factor drives, per value of it; None if none."""
    out = None
    schema = model.kb.schema
    for lab in model.parent_labs:
        if model.var_index(lab.parent) != parent:
            continue
        col = schema.column(lab.name)
        value = typed[lab.name].to_numpy(dtype=float)
        seen = ~np.isnan(value)
        lik = np.ones((2, len(value)))
        lik[0, seen] = lab_bin_probability(lab, value[seen], False, col.min, col.max)
        lik[1, seen] = lab_bin_probability(lab, value[seen], True, col.min, col.max)
        lik = np.maximum(lik, 1e-300)
        lik /= lik.max(axis=0)  # a per-row constant drops out
        out = lik if out is None else out * lik
    return out


def _parent_leaf(model: CompiledModel, typed, codes, v: int, local: dict[int, int], risk_base, risk_parents):
    """Parent variable v's row-level leaf (scope, table), None where it is a per-row constant.

    In the pattern: its population prior or logistic table given its parents in the pattern,
    pinned in the rows that answered it, times the likelihood of a lab it drives. Answered in
    every row but with blank parents (a risk factor): P(its answer | those parents).
    """
    var = model.parent_vars[v]
    pattern = tuple(local)
    parents = ()
    if var.kind == "risk":
        parents = tuple(sorted(local[p] for p in risk_parents[var.risk_index] if p in local))
        w = model.risk_weights[:, var.risk_index]
        logit = _logit_table(model, w, risk_base[:, var.risk_index], parents, pattern)
    if v not in local:
        if not parents:
            return None
        return parents, expit(np.where(codes[:, v] == 1, 1.0, -1.0) * logit)
    scope = tuple(sorted((*parents, local[v])))
    axis = scope.index(local[v])
    if var.kind == "risk":
        table = np.stack([expit(-logit), expit(logit)], axis=axis)
    else:
        table = np.broadcast_to(np.exp(var.log_prior)[:, None], (var.cardinality, len(codes)))
    pin = np.ones((var.cardinality, len(codes)))
    seen = codes[:, v] >= 0
    pin[:, seen] = np.arange(var.cardinality)[:, None] == codes[seen, v][None, :]
    table = table * _along(pin, axis, len(scope) + 1)
    if var.kind == "risk" and (lik := _parent_lab_likelihood(model, typed, v)) is not None:
        table = table * _along(lik, axis, len(scope) + 1)
    return scope, np.ascontiguousarray(table)


def blank_graph(model: CompiledModel, typed: pd.DataFrame, codes: np.ndarray) -> BlankGraph:
    """The factor graph of these rows' blank parents (codes: (n, V), -1 where blank)."""
    pattern = tuple(int(v) for v in np.flatnonzero((codes < 0).any(axis=0)))
    local = {v: i for i, v in enumerate(pattern)}
    observed = codes.copy()
    observed[:, list(pattern)] = -1  # the pattern's features are set along the table axes instead
    x = model.features(typed["age"].to_numpy(dtype=float), observed)
    risk_base = x @ model.risk_weights + model.risk_bias
    risk_parents = _parents(model, model.risk_weights)
    leaves = [_parent_leaf(model, typed, codes, v, local, risk_base, risk_parents) for v in range(codes.shape[1])]
    leaves = [leaf for leaf in leaves if leaf is not None]

    cond_base = model.condition_logits(x)
    item_scopes, pi = [], []
    for c, parents in enumerate(_parents(model, model.condition_weights)):
        scope = tuple(sorted(local[p] for p in parents if p in local))
        item_scopes.append(scope)
        pi.append(expit(_logit_table(model, model.condition_weights[:, c], cond_base[:, c], scope, pattern)))
    cards = tuple(model.parent_vars[v].cardinality for v in pattern)
    groups = tuple(tuple(range(sl.start, sl.stop)) for sl in cause_slices(model.cause_matrix) if sl.stop - sl.start > 1)
    plan = build_plan(cards, tuple(scope for scope, _ in leaves), tuple(item_scopes), groups)
    return BlankGraph(pattern, plan, [table for _, table in leaves], pi)
