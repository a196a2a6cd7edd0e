"""Approximate posterior of each condition by loopy belief propagation on the knowledge base.

The oracle (pipeline.world.oracle) is exact but costs an expansion per row; this is its cheap
companion, used as a model feature (pipeline.learning.features, `posterior`). It gives the
learned model what a sum of per-field terms cannot represent: explaining away of every order,
where which condition accounts for a finding depends on every other finding on the form.

For one row, every condition c gets a prior logit from the fields above it, with a blank person
field or risk factor replaced by its expected value (its population share, or its own logistic
probability given the fields before it). A negative finding multiplies P(c present) by 1 - p_cf.
Each positive finding and each answered condition-driven lab is a factor over the conditions it
links (noisy-OR, `a + b * prod_c (1 - p_c)^{s_c}` as in pipeline.world.evidence). A factor of
one condition sends it a constant message; between the factors of several conditions and their
conditions, messages pass for `iterations` rounds:

    factor j -> condition c:  log (a_j + b_j (1 - p_cj) M) - log (a_j + b_j M),
                              M = prod over the factor's other conditions c' of (1 - q_c' p_c'j),
    q_c' = expit(c''s prior + negatives + the messages of its other factors).

On a form whose factors share no two conditions (a tree) this is exact given the prior; with all
the parents answered it then equals the oracle (tests/test_belief.py). On the general population's
validation rows three rounds come within about 0.4% of the oracle's log-loss on their own.

The logit is a sum of terms that each belong to one intake field (a prior feature's term, a
finding's or a lab's messages), which `posterior_parts` returns for exact explanations.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.contract.knowledge import AGE_CENTER, AGE_FACTOR, AGE_PER
from pipeline.world.evidence import finding_states, lab_coupling, parent_codes
from pipeline.world.network import CompiledModel
from pipeline.world.special import expit

ITERATIONS = 3


def _log_ratio(a: np.ndarray, b: np.ndarray, p: np.ndarray, others: np.ndarray | float) -> np.ndarray:
    """log(a + b (1 - p) M) - log(a + b M): a factor's message to a condition of link p."""
    bm = b * others
    return np.log(np.maximum(a + bm * (1.0 - p), 1e-300) / np.maximum(a + bm, 1e-300))


def expected_parent_features(model: CompiledModel, typed: pd.DataFrame) -> np.ndarray:
    """(n, F) the knowledge base's person and risk-factor features, a blank one at its expectation.

    A blank root field takes its population shares; a blank risk factor its logistic probability
    given the (expected) features before it, in the knowledge base's order. Column-major: it is
    filled column by column.
    """
    x = np.zeros((len(typed), len(model.feature_names)), order="F")
    x[:, model.feature_names.index(AGE_FACTOR)] = (typed["age"].to_numpy(dtype=float) - AGE_CENTER) / AGE_PER
    for v, var in enumerate(model.parent_vars):
        off, on = var.feature_index if len(var.feature_index) == 2 else (0, -1)
        if var.kind in ("yes_no", "risk") and off < 0:  # validated to 0, 1 or blank: the value is its feature
            value = typed[var.name].to_numpy(dtype=float)
            blank = np.isnan(value)
            x[:, on] = value
        else:
            codes = parent_codes(model, typed, [v])[:, 0]
            blank = codes < 0
            model.set_features(x, v, codes)  # a blank (-1) sets no level
        if not blank.any():
            continue
        rows = np.flatnonzero(blank)
        if var.kind == "risk":
            w = model.risk_weights[:, var.risk_index]
            used = np.flatnonzero(w)  # the few features this risk factor depends on
            share = expit(x[np.ix_(rows, used)] @ w[used] + model.risk_bias[var.risk_index])
            x[rows, var.feature_index[1]] = share
        else:
            shares = np.exp(var.log_prior)
            for level, f in enumerate(var.feature_index):
                if f >= 0:
                    x[rows, f] = shares[level]
    return x


@dataclass(frozen=True)
class _Arity:
    """The factors of k conditions: their ids, and per factor its conditions and links (m, k)."""

    factors: np.ndarray  # (m,)
    parents: np.ndarray  # (m, k)
    links: np.ndarray  # (m, k)


@dataclass(frozen=True)
class _Tables:
    """What every chunk's graph reads from the knowledge base, made once per compiled model."""

    link: np.ndarray  # (C, J) the factors' links: the yes/no findings, then the condition-driven labs
    single_finding: np.ndarray  # (B, C) a positive finding of one condition: its constant message
    finding_base: np.ndarray  # (2B, C) a negative finding's log(1 - p) rows, then `single_finding`
    finding_b: np.ndarray  # (B,) b of a positive finding's factor, -(1 - leak) (a is 1)
    parents: tuple[np.ndarray, ...]  # per factor, its conditions
    arities: dict[int, _Arity]  # the factors of two conditions or more, by their number of conditions
    finding_arities: dict[int, np.ndarray]  # of those, the findings (their ids), by number of conditions


_TABLES: dict[int, tuple[weakref.ref, _Tables]] = {}  # by id; the weak reference tells a reused id apart


def _tables(model: CompiledModel) -> _Tables:
    known = _TABLES.get(id(model))
    if known is not None and known[0]() is model:
        return known[1]
    link = np.concatenate([model.finding_link, model.lab_link], axis=1)
    parents = tuple(np.flatnonzero(link[:, j] > 0) for j in range(link.shape[1]))
    counts = np.array([len(p) for p in parents], dtype=np.int64)
    n_b = len(model.findings)
    finding_b = -(1.0 - model.finding_leak)
    single = np.zeros((n_b, model.n_conditions))
    for j in np.flatnonzero(counts[:n_b] == 1):
        c = parents[j][0]
        single[j, c] = _log_ratio(np.ones(1), finding_b[j : j + 1], link[c, j], 1.0)[0]
    log_one_minus = np.log1p(-np.minimum(model.finding_link, 1 - 1e-16))  # (C, B)
    arities = {}
    for k in np.unique(counts[counts >= 2]):
        factors = np.flatnonzero(counts == k)
        members = np.array([parents[j] for j in factors])
        arities[int(k)] = _Arity(factors, members, link[members, factors[:, None]])
    finding_base = np.concatenate([log_one_minus.T, single])
    tables = _Tables(
        link=link,
        single_finding=finding_base[n_b:],  # a view: the same rows
        finding_base=finding_base,
        finding_b=finding_b,
        parents=parents,
        arities=arities,
        finding_arities={k: a.factors[a.factors < n_b] for k, a in arities.items()},
    )
    _TABLES[id(model)] = (weakref.ref(model), tables)
    return tables


@dataclass
class _Group:
    """The (row, factor) pairs of one chunk whose factor has k conditions: P pairs, P x k edges."""

    edges: slice  # their place in the chunk's flat edge arrays (pair by pair, condition by condition)
    slot: np.ndarray  # (P, k) each edge's place in a flat (n, C) array
    p: np.ndarray  # (P, k) the edges' links
    a: np.ndarray  # (P, 1) the factor's a (1 for a finding; a lab's depends on its value)
    b: np.ndarray  # (P, 1)


class _Graph:
    """One chunk's factor graph: priors and the factors of one condition folded into `base`, and
    the edges of the factors of several conditions (one per row, factor and condition), grouped by
    the factor's number of conditions so that each group's messages are (pairs, k) arrays.

    With `keep` (for `posterior_parts`) it keeps what the parts are made of: the prior's features
    `x`, the `negative` and `positive` findings and each edge's `factor`; without, they are let go
    before the messages, whose temporaries then take their place (a scorer's peak memory)."""

    def __init__(self, model: CompiledModel, typed: pd.DataFrame, keep: bool = False):
        n, n_c = len(typed), model.n_conditions
        self.shape = (n, n_c)
        tables = _tables(model)
        x = expected_parent_features(model, typed)
        self.base = x @ model.condition_weights
        self.base += model.condition_bias
        if keep:
            self.x = x
        del x  # before the findings' arrays are made (a scorer's peak memory)
        states = finding_states(model, typed)
        n_b = states.shape[1]
        signs = np.empty((n, 2 * n_b), order="F")  # a negative finding, then a positive one (a blank is neither)
        np.equal(states, 0.0, out=signs[:, :n_b])
        np.equal(states, 1.0, out=signs[:, n_b:])
        del states
        self.base += signs @ tables.finding_base
        if keep:
            self.negative, self.positive = signs[:, :n_b], signs[:, n_b:]
        positive = signs[:, n_b:] == 1.0
        del signs
        pairs: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}  # rows, factors, a, b
        for k, findings in tables.finding_arities.items():
            rows, which = np.nonzero(positive[:, findings])
            factors = findings[which]
            pairs.setdefault(k, []).append((rows, factors, np.ones(len(rows)), tables.finding_b[factors]))
        self.single_labs = []  # (factor, rows, constant message, condition) of the labs of one condition
        for j in range(len(model.labs)):
            factor = n_b + j
            parents = tables.parents[factor]
            if len(parents) == 0:
                continue
            lab_rows, a, b = lab_coupling(model, typed, j)
            if len(parents) == 1:
                fixed = _log_ratio(a, b, tables.link[parents[0], factor], 1.0)
                self.base[lab_rows, parents[0]] += fixed
                self.single_labs.append((factor, lab_rows, fixed, parents[0]))
            else:
                pairs.setdefault(len(parents), []).append((lab_rows, np.full(len(lab_rows), factor), a, b))
        self.groups: list[_Group] = []
        found = [(k, *(np.concatenate(x) for x in zip(*parts, strict=True))) for k, parts in sorted(pairs.items())]
        del pairs
        self.slot = np.empty(sum(k * len(rows) for k, rows, *_ in found), dtype=np.int64)  # the groups' slots are views
        factor_ids, start = [], 0
        for k, rows, factors, a, b in found:
            at = np.searchsorted(tables.arities[k].factors, factors)  # each pair's factor in its arity table
            slot = self.slot[start : start + k * len(rows)].reshape(len(rows), k)
            np.add(rows[:, None] * n_c, tables.arities[k].parents[at], out=slot)
            group = _Group(slice(start, start + slot.size), slot, tables.arities[k].links[at], a[:, None], b[:, None])
            self.groups.append(group)
            if keep:
                factor_ids.append(np.repeat(factors, k))
            start += slot.size
        del found
        if keep:
            self.factor = np.concatenate(factor_ids) if factor_ids else np.zeros(0, dtype=np.int64)

    @property
    def pair(self) -> np.ndarray:
        """Each edge's (row, factor) pair, numbered across the groups."""
        out, first = [], 0
        for g in self.groups:
            count, k = g.slot.shape
            out.append(np.repeat(np.arange(first, first + count), k))
            first += count
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def messages(self, iterations: int) -> np.ndarray:
        """Each edge's factor-to-condition message (a log ratio) after `iterations` rounds."""
        msg = np.zeros(len(self.slot))
        base = self.base.ravel()
        with np.errstate(over="ignore"):  # exp(-q) of a very negative logit: q is then 0, as it should
            for _ in range(iterations):
                total = base + np.bincount(self.slot, weights=msg, minlength=len(base))
                # each group reads only its own edges' messages of the round before: they are
                # replaced group by group, in place (no second array of every edge's message)
                for g in self.groups:
                    term = total[g.slot]
                    term -= msg[g.edges].reshape(g.slot.shape)
                    expit(term, out=term)  # q, the condition's belief without this factor's message
                    term *= g.p
                    np.subtract(1.0, term, out=term)  # 1 - q p = 1 - q + q (1 - p)
                    # the product over the factor's other conditions: of two, the other one; else all over
                    # this one (1 - q p > 0: the knowledge base refuses a link of 1)
                    others = term[:, ::-1] if term.shape[1] == 2 else np.prod(term, axis=1, keepdims=True) / term
                    msg[g.edges] = _log_ratio(g.a, g.b, g.p, others).ravel()
        return msg

    def logits(self, msg: np.ndarray) -> np.ndarray:
        size = self.shape[0] * self.shape[1]
        return self.base + np.bincount(self.slot, weights=msg, minlength=size).reshape(self.shape)


def posterior_logits(model: CompiledModel, typed: pd.DataFrame, iterations: int = ITERATIONS) -> np.ndarray:
    """(n, C) approximate posterior logit of each condition (see the module docstring)."""
    if len(typed) == 0:
        return np.zeros((0, model.n_conditions))
    graph = _Graph(model, typed)
    return graph.logits(graph.messages(iterations))


def _field_of_features(model: CompiledModel, fields: list[str]) -> np.ndarray:
    """The intake field of each knowledge-base feature column (age, person fields, risk factors)."""
    index = {f: i for i, f in enumerate(fields)}
    out = np.full(len(model.feature_names), -1)
    out[model.feature_names.index(AGE_FACTOR)] = index["age"]
    for var in model.parent_vars:
        for f in var.feature_index:
            if f >= 0:
                out[f] = index[var.name]
    if (out < 0).any():
        raise ValueError("a knowledge-base feature without an intake field")
    return out


def posterior_parts(
    model: CompiledModel, typed: pd.DataFrame, fields: list[str], iterations: int = ITERATIONS
) -> tuple[np.ndarray, np.ndarray]:
    """(parts (n, C, fields), constant (C,)): constant + parts summed over fields = posterior_logits.

    A prior feature's term goes to its field (a blank field's expected value included), a finding's
    negative or constant message to the finding's field, and a factor's messages to its finding's or
    lab's field.
    """
    n, n_c = len(typed), model.n_conditions
    parts = np.zeros((n, n_c, len(fields)))
    if n == 0:
        return parts, model.condition_bias.copy()
    graph = _Graph(model, typed, keep=True)
    tables = _tables(model)
    index = {f: i for i, f in enumerate(fields)}
    feature_field = _field_of_features(model, fields)
    for field in np.unique(feature_field):
        pick = feature_field == field
        parts[:, :, field] += graph.x[:, pick] @ model.condition_weights[pick]
    for j, finding in enumerate(model.findings):
        terms = graph.negative[:, j, None] * tables.finding_base[None, j]
        terms += graph.positive[:, j, None] * tables.single_finding[None, j]
        parts[:, :, index[finding.field]] += terms
    factor_field = np.array([index[f.field] for f in model.findings] + [index[lab.name] for lab in model.labs])
    for factor, rows, fixed, condition in graph.single_labs:
        parts[rows, condition, factor_field[factor]] += fixed
    flat = graph.slot * len(fields) + factor_field[graph.factor]
    parts += np.bincount(flat, weights=graph.messages(iterations), minlength=parts.size).reshape(parts.shape)
    return parts, model.condition_bias.copy()


def knowledge_posterior(frame: pd.DataFrame, population: str, kb_sha256: str, iterations: int) -> np.ndarray:
    """(n, conditions) `posterior_logits` under the knowledge base a model was trained with: the
    feature function of pipeline.learning.features (`posterior`). Another knowledge base is an
    error (the model must be retrained), never a silent mix."""
    return posterior_logits(knowledge_model(population, kb_sha256), frame, int(iterations))


def knowledge_model(population: str, kb_sha256: str) -> CompiledModel:
    """The installed knowledge base compiled for `population`, if it is the one named by its hash."""
    from pipeline.world.network import default_model

    model = default_model(population)
    if model.kb.sha256 != kb_sha256:
        raise ValueError(
            f"this model was trained with knowledge base {kb_sha256[:12]}, the installed one is "
            f"{model.kb.sha256[:12]}: retrain it (make train)"
        )
    return model
