"""The evidence a row gives the oracle: finding states, parent codes, and the coupling factors.

Split from pipeline.world.oracle: what is observed, turned into the arrays the exact
inference of oracle.py expands (see its docstring for the method). The findings part
(`_findings`) is the same whatever happens to the blank parents; `_evidence` adds every joint
completion of them (rows with few), `_blank_evidence` only their codes, for elimination.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.world.network import CompiledModel, lab_bin_probability, lab_likelihoods
from pipeline.world.special import expit

MAX_COUPLING = 22  # 2^22 terms per row: beyond this a row is refused, not approximated


class OracleLimitError(RuntimeError):
    """A row has more positive findings and labs than the exact method can expand."""


def finding_states(model: CompiledModel, typed: pd.DataFrame) -> np.ndarray:
    """(n, B) array of each yes/no finding: 1 present, 0 absent, NaN blank (column-major)."""
    schema = model.kb.schema
    out = np.full((len(typed), len(model.findings)), np.nan, order="F")
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "category":
            codes = typed[f.field].cat.codes.to_numpy()
            present, absent = col.categories.index(f.present), col.categories.index(f.absent)
            out[:, j] = np.where(codes == present, 1.0, np.where(codes == absent, 0.0, np.nan))
        elif col.kind == "integer":
            v = typed[f.field].to_numpy(dtype=float)
            out[:, j] = np.where(np.isnan(v), np.nan, (v >= f.present_range[0]).astype(float))
        else:
            out[:, j] = typed[f.field].to_numpy(dtype=float)
    return out


def parent_codes(model: CompiledModel, typed: pd.DataFrame, which: list[int] | None = None) -> np.ndarray:
    """(n, V) codes of the person fields and risk factors (or of the variables `which`), -1 where blank."""
    which = range(len(model.parent_vars)) if which is None else which
    codes = np.full((len(typed), len(which)), -1, dtype=np.int64)
    for v, var in enumerate(model.parent_vars[i] for i in which):
        col = typed[var.name]
        if var.kind == "category":
            codes[:, v] = col.cat.codes.to_numpy()
        elif var.kind == "band":
            x = col.to_numpy(dtype=float)
            band = np.searchsorted(np.array(model.kb.bands[var.name].cuts), x, side="right")
            codes[:, v] = np.where(np.isnan(x), -1, band)
        else:
            x = col.to_numpy(dtype=float)
            codes[:, v] = np.where(np.isnan(x), -1, x).astype(np.int64)
    return codes


def expand_blank_parents(model: CompiledModel, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every completion of each row's blank parents: (row of each pair, complete codes)."""
    row = np.arange(len(codes))
    full = codes
    for v, var in enumerate(model.parent_vars):
        blank = full[:, v] < 0
        if not blank.any():
            continue
        card = var.cardinality
        filled = np.repeat(full[blank], card, axis=0)
        filled[:, v] = np.tile(np.arange(card), int(blank.sum()))
        row = np.concatenate([row[~blank], np.repeat(row[blank], card)])
        full = np.concatenate([full[~blank], filled])
    order = np.argsort(row, kind="stable")
    return row[order], full[order]


def _parent_lab_log_lik(
    model: CompiledModel, typed: pd.DataFrame, pair_row: np.ndarray, pair_codes: np.ndarray
) -> np.ndarray:
    out = np.zeros(len(pair_row))
    schema = model.kb.schema
    for lab in model.parent_labs:
        col = schema.column(lab.name)
        value = typed[lab.name].to_numpy(dtype=float)[pair_row]
        seen = ~np.isnan(value)
        if not seen.any():
            continue
        parent_on = pair_codes[seen, model.var_index(lab.parent)] == 1
        v = value[seen]
        p_abn = lab_bin_probability(lab, v, True, col.min, col.max)
        p_norm = lab_bin_probability(lab, v, False, col.min, col.max)
        out[seen] = np.log(np.maximum(np.where(parent_on, p_abn, p_norm), 1e-300))
    return out


def lab_coupling(model: CompiledModel, typed: pd.DataFrame, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows where condition-driven lab j is answered, a, b) of its coupling factor a + b q(S),
    scaled so that max(|a|, |b|) is 1 on each row."""
    lab = model.labs[j]
    col = model.kb.schema.column(lab.name)
    value = typed[lab.name].to_numpy(dtype=float)
    rows = np.flatnonzero(~np.isnan(value))
    # a lab holds a few hundred distinct values: each likelihood is computed once per value (and kept)
    inverse, distinct = pd.factorize(value[rows])  # hashed, in order of appearance
    g_abn, g_norm = lab_likelihoods(lab, np.asarray(distinct, dtype=np.float64), col.min, col.max)
    g_abn, g_norm = g_abn[inverse], g_norm[inverse]
    aj = g_abn
    bj = (g_norm - g_abn) * (1.0 - model.lab_leak[j])
    scale = np.maximum(np.maximum(np.abs(aj), np.abs(bj)), 1e-300)
    return rows, aj / scale, bj / scale


def _coupling_factors(model: CompiledModel, typed: pd.DataFrame, states: np.ndarray):
    """Per row: (a, b) of every positive finding and observed lab, with a mask of which apply."""
    n = len(typed)
    n_b, n_l = len(model.findings), len(model.labs)
    a = np.ones((n, n_b + n_l))
    b = np.zeros((n, n_b + n_l))
    used = np.zeros((n, n_b + n_l), dtype=bool)
    positive = states == 1
    used[:, :n_b] = positive
    b[:, :n_b] = -(1.0 - model.finding_leak)
    for j in range(n_l):
        rows, aj, bj = lab_coupling(model, typed, j)
        a[rows, n_b + j] = aj
        b[rows, n_b + j] = bj
        used[rows, n_b + j] = True
    return a, b, used


def _fold_single_parent_factors(link_all: np.ndarray, a: np.ndarray, b: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Per-condition weights (n, C) of coupling factors with one parent; clears them from `used`.

    A factor a + b (1 - p)^{s_c} of a single condition c is (a + b) times a ratio that applies
    only when c is present, so it joins that condition's weight and needs no expansion.
    A factor with no parent is a constant and drops out.
    """
    n_parents = (link_all > 0).sum(axis=0)
    ratio = np.ones((len(a), link_all.shape[0]))
    for j in np.flatnonzero(n_parents <= 1):
        rows = used[:, j]
        if n_parents[j] == 1:
            c = int(np.flatnonzero(link_all[:, j])[0])
            aj, bj = a[rows, j], b[rows, j]
            ratio[rows, c] *= (aj + bj * (1.0 - link_all[c, j])) / (aj + bj)
        used[:, j] = False
    return ratio


def configuration_counts(model: CompiledModel, codes: np.ndarray) -> np.ndarray:
    """Per row: how many completions its blank parents have (the joint enumeration's size)."""
    cards = np.array([var.cardinality for var in model.parent_vars], dtype=float)
    return np.where(codes < 0, cards, 1.0).prod(axis=1)


def subset_block(v: np.ndarray, a: np.ndarray, b: np.ndarray, first: int, size: int, dtype):
    """Quickscore's Q (n, C, size) and coef (n, size) for the subsets T with ids first, ...,
    first + size - 1 (bit j set: coupling factor j in T; size a power of two dividing first),
    for rows with k factors: v (n, k, C) the factors' 1 - link, a and b (n, k).

    Q_c(T) = prod_{j in T} v_jc and coef(T) = prod_j (b_j if j in T else a_j), multiplied in
    order of j: by doubling over the low bits that vary in the block, then the fixed high bits.
    The subset axis is last (contiguous), so numpy sums over it pairwise.
    """
    n, k, n_c = v.shape
    q = np.ones((n, n_c, 1), dtype=dtype)
    coef = np.ones((n, 1), dtype=dtype)
    low = size.bit_length() - 1
    for j in range(low):
        q = np.concatenate([q, q * v[:, j, :, None]], axis=2)
        coef = np.concatenate([coef * a[:, j, None], coef * b[:, j, None]], axis=1)
    for j in range(low, k):
        if (first >> j) & 1:
            q = q * v[:, j, :, None]
            coef = coef * b[:, j, None]
        else:
            coef = coef * a[:, j, None]
    return q, coef


def cause_slices(cause_matrix: np.ndarray) -> list[slice]:
    """Conditions of each cause are contiguous in schema order; their slices."""
    slices = []
    for g in range(cause_matrix.shape[1]):
        members = np.flatnonzero(cause_matrix[:, g])
        if not np.array_equal(members, np.arange(members[0], members[-1] + 1)):
            raise ValueError("the conditions of a cause must be contiguous")
        slices.append(slice(int(members[0]), int(members[-1]) + 1))
    return slices


@dataclass
class _Findings:
    """What a chunk's findings and labs show, whatever the parents' treatment."""

    w: np.ndarray  # (n, C) likelihood ratio of the folded findings when a condition is present
    a: np.ndarray  # (n, J) coupling factors a_j + b_j q_j(S)
    b: np.ndarray
    used: np.ndarray  # (n, J) which coupling factors a row has
    link: np.ndarray  # (C, J) noisy-OR link probabilities of the factors

    @property
    def k_row(self) -> np.ndarray:
        return self.used.sum(axis=1)


@dataclass
class _Evidence(_Findings):
    """Findings, and every joint completion of each row's blank parents (enumeration)."""

    n_rows: int = 0
    pair_row: np.ndarray | None = None  # (P,) row of each completion of the blank parents
    pi: np.ndarray | None = None  # (P, C) prior probability of each condition given the completion
    log_omega: np.ndarray | None = None  # (P,) log P(completion, observed parents), max 0 within a row


def _findings(model: CompiledModel, typed: pd.DataFrame) -> _Findings:
    states = finding_states(model, typed)
    log_one_minus = np.log1p(-np.minimum(model.finding_link, 1 - 1e-16))  # (C, B)
    negative = np.nan_to_num(states == 0).astype(float)
    w = np.exp(negative @ log_one_minus.T)  # (n, C)
    a, b, used = _coupling_factors(model, typed, states)
    link = np.concatenate([model.finding_link, model.lab_link], axis=1)
    w = w * _fold_single_parent_factors(link, a, b, used)
    k_row = used.sum(axis=1)
    if k_row.max(initial=0) > MAX_COUPLING:
        worst = int(np.argmax(k_row))
        raise OracleLimitError(
            f"row {typed.index[worst]} has {k_row[worst]} positive findings and labs; "
            f"the exact oracle expands at most {MAX_COUPLING}"
        )
    return _Findings(w, a, b, used, link)


def _evidence(model: CompiledModel, typed: pd.DataFrame) -> _Evidence:
    f = _findings(model, typed)
    n = len(typed)
    age = typed["age"].to_numpy(dtype=float)
    pair_row, pair_codes = expand_blank_parents(model, parent_codes(model, typed))
    x = model.features(age[pair_row], pair_codes)
    log_weight = model.parent_log_prob(x, pair_codes)
    log_weight += _parent_lab_log_lik(model, typed, pair_row, pair_codes)
    max_w = np.full(n, -np.inf)
    np.maximum.at(max_w, pair_row, log_weight)
    pi = expit(model.condition_logits(x))
    return _Evidence(f.w, f.a, f.b, f.used, f.link, n, pair_row, pi, log_weight - max_w[pair_row])


@dataclass
class _BlankEvidence(_Findings):
    """Findings, and the rows' parent codes for variable elimination over the blank ones."""

    typed: pd.DataFrame | None = None
    codes: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return len(self.codes)


def _blank_evidence(model: CompiledModel, typed: pd.DataFrame) -> _BlankEvidence:
    f = _findings(model, typed)
    return _BlankEvidence(f.w, f.a, f.b, f.used, f.link, typed, parent_codes(model, typed))
