"""The knowledge base compiled into numpy arrays: one model, read by the generator and the oracle.

Layers (see data/knowledge_base.yaml):
  person fields   roots, drawn from a population preset (numbers act through bands);
  risk factors    logistic in the factors before them;
  conditions      logistic in person fields and risk factors, independent given them;
  findings        noisy-OR with a leak: P(absent | S) = (1 - leak) * prod_{c in S} (1 - p_c);
  labs            normal or abnormal distribution, abnormal by noisy-OR (or by a risk factor).

>>> import numpy as np
>>> noisy_or_absent(np.array([[1, 0], [1, 1]]), leak=np.array([0.1]), link=np.array([[0.5], [0.2]]))
array([[0.45],
       [0.36]])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.contract.knowledge import (
    AGE_CENTER,
    AGE_FACTOR,
    AGE_PER,
    Finding,
    KnowledgeBase,
    Lab,
    NumericDistribution,
    Population,
    person_factor_names,
)
from pipeline.contract.loader import default_knowledge_base
from pipeline.world.kept_rows import KeptRows
from pipeline.world.special import log_expit, ndtr


def noisy_or_absent(present: np.ndarray, leak: np.ndarray, link: np.ndarray) -> np.ndarray:
    """P(finding absent | conditions) for rows of 0/1 condition indicators: (n, C) -> (n, F)."""
    log_q = np.asarray(present, dtype=float) @ np.log1p(-np.minimum(link, 1.0 - 1e-300))
    return (1.0 - leak) * np.exp(log_q)


def truncated_normal_mass(
    lo: np.ndarray, hi: np.ndarray, mean: float, sd: float, lower: float, upper: float
) -> np.ndarray:
    """P(lo <= X < hi) for X ~ Normal(mean, sd) truncated to [lower, upper]; tail-accurate."""
    lo = np.clip(lo, lower, upper)
    hi = np.clip(hi, lower, upper)
    z_lo, z_hi = (lo - mean) / sd, (hi - mean) / sd
    z_lower, z_upper = (lower - mean) / sd, (upper - mean) / sd
    # Differences of upper-tail probabilities where the interval lies above the mean: P(X < -lo) -
    # P(X < -hi) there, P(X < hi) - P(X < lo) elsewhere; one call of ndtr for all (it works value by
    # value, and its fixed cost is most of it for a lab's few hundred values).
    z_lo, z_hi = np.broadcast_arrays(z_lo, z_hi)
    upper_side = z_lo > 0
    first, second = np.where(upper_side, -z_lo, z_hi).ravel(), np.where(upper_side, -z_hi, z_lo).ravel()
    bound = [-z_lower, -z_upper] if z_lower > 0 else [z_upper, z_lower]
    cdf = ndtr(np.concatenate([first, second, bound]))
    n = first.size
    mass = (cdf[:n] - cdf[n : 2 * n]).reshape(z_lo.shape)
    total = cdf[-2] - cdf[-1]
    return np.maximum(mass, 0.0) / total


@dataclass(frozen=True)
class ParentVar:
    """A person field or risk factor: coded 0..L-1 (yes/no as no=0, yes=1)."""

    name: str
    kind: str  # "category" | "band" | "yes_no" (a person root) | "risk" (logistic)
    levels: tuple[str, ...]
    feature_index: np.ndarray  # (L,) feature column set to 1 at that level, -1 for none
    log_prior: np.ndarray | None  # (L,) for roots, from the population
    risk_index: int = -1  # column of the risk-factor weights

    @property
    def cardinality(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class CompiledModel:
    kb: KnowledgeBase
    population: Population
    conditions: tuple[str, ...]
    causes: tuple[str, ...]
    cause_matrix: np.ndarray  # (C, G) 1 where a condition belongs to a cause
    feature_names: tuple[str, ...]
    parent_vars: tuple[ParentVar, ...]
    risk_weights: np.ndarray  # (F, R)
    risk_bias: np.ndarray  # (R,)
    condition_weights: np.ndarray  # (F, C)
    condition_bias: np.ndarray  # (C,)
    findings: tuple[Finding, ...]
    finding_leak: np.ndarray  # (B,)
    finding_link: np.ndarray  # (C, B)
    labs: tuple[Lab, ...]  # condition-driven labs
    lab_leak: np.ndarray  # (L,)
    lab_link: np.ndarray  # (C, L)
    parent_labs: tuple[Lab, ...]  # labs driven by a risk factor

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    def var_index(self, name: str) -> int:
        for i, v in enumerate(self.parent_vars):
            if v.name == name:
                return i
        raise KeyError(name)

    def features(self, age: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Design matrix (n, F) from ages and complete parent codes (n, V)."""
        x = np.zeros((len(age), len(self.feature_names)))
        x[:, 0] = (np.asarray(age, dtype=float) - AGE_CENTER) / AGE_PER
        for v, _var in enumerate(self.parent_vars):
            self.set_features(x, v, codes[:, v])
        return x

    def set_features(self, x: np.ndarray, v: int, code: np.ndarray) -> None:
        """Write variable v's indicator columns into x for the given codes."""
        for level, f in enumerate(self.parent_vars[v].feature_index):
            if f >= 0:
                x[:, f] = code == level

    def parent_log_prob(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """log P(person fields and risk factors) per row, given complete codes (age excluded)."""
        total = np.zeros(len(x))
        risk_logits = x @ self.risk_weights + self.risk_bias
        for v, var in enumerate(self.parent_vars):
            if var.kind == "risk":
                sign = np.where(codes[:, v] == 1, 1.0, -1.0)
                total += log_expit(sign * risk_logits[:, var.risk_index])
            else:
                total += var.log_prior[codes[:, v]]
        return total

    def condition_logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.condition_weights + self.condition_bias


def band_log_prior(dist: NumericDistribution, cuts: tuple[float, ...]) -> np.ndarray:
    """log P(band) of a truncated, rounded normal: a value rounds into the band of its cut."""
    edges = np.array([dist.min - dist.step, *cuts, dist.max + dist.step]) - dist.step / 2
    mass = truncated_normal_mass(edges[:-1], edges[1:], dist.mean, dist.sd, dist.min, dist.max)
    return np.log(mass)


def _weights(nodes, factor_index: dict[str, int], n_features: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.zeros((n_features, len(nodes)))
    b = np.zeros(len(nodes))
    for j, node in enumerate(nodes):
        b[j] = node.base_log_odds
        for eff in node.effects:
            w[factor_index[eff.factor], j] = eff.log_odds
    return w, b


def _links(items, conditions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    leak = np.array([it.leak for it in items])
    link = np.zeros((len(conditions), len(items)))
    cidx = {c: i for i, c in enumerate(conditions)}
    for j, it in enumerate(items):
        for lk in it.links:
            link[cidx[lk.condition], j] = lk.p
    return leak, link


def compile_model(kb: KnowledgeBase, population: str = "general") -> CompiledModel:
    """Turn the knowledge base and a population preset into arrays."""
    if population not in kb.populations:
        raise KeyError(f"unknown population {population!r}; known: {sorted(kb.populations)}")
    pop = kb.populations[population]
    schema = kb.schema
    feature_names = person_factor_names(schema, kb.bands) + [n.name for n in kb.risk_factors]
    findex = {f: i for i, f in enumerate(feature_names)}
    assert feature_names[0] == AGE_FACTOR

    parent_vars = []
    for col in schema.columns_of(group="person"):
        if col.name == "age":
            continue
        if col.kind == "yes_no":
            levels = ("no", "yes")
            fidx = np.array([-1, findex[col.name]])
            prior = np.log([pop.categorical[col.name]["no"], pop.categorical[col.name]["yes"]])
            kind = "yes_no"
        elif col.kind == "category":
            levels = col.categories
            fidx = np.array([findex[f"{col.name}={v}"] for v in levels])
            prior = np.log([pop.categorical[col.name][v] for v in levels])
            kind = "category"
        else:
            band = kb.bands[col.name]
            levels = band.labels
            fidx = np.array([findex[f"{col.name}={v}"] for v in levels])
            prior = band_log_prior(pop.numeric[col.name], band.cuts)
            kind = "band"
        parent_vars.append(ParentVar(col.name, kind, levels, fidx, prior))
    for j, node in enumerate(kb.risk_factors):
        parent_vars.append(ParentVar(node.name, "risk", ("no", "yes"), np.array([-1, findex[node.name]]), None, j))

    risk_w, risk_b = _weights(kb.risk_factors, findex, len(feature_names))
    for j, node in enumerate(kb.risk_factors):
        risk_b[j] += pop.risk_factor_shift.get(node.name, 0.0)
    cond_w, cond_b = _weights(kb.conditions, findex, len(feature_names))

    conditions = kb.condition_names
    causes = schema.cause_names
    cause_matrix = np.array([[schema.cause_of(c) == g for g in causes] for c in conditions], dtype=float)
    f_leak, f_link = _links(kb.findings, conditions)
    # The complaint's duration is read like a lab: persistent, or recent by noisy-OR (acute DVT).
    cond_labs = (*(lab for lab in kb.labs if not lab.parent), kb.duration)
    l_leak, l_link = _links(cond_labs, conditions)
    return CompiledModel(
        kb=kb,
        population=pop,
        conditions=conditions,
        causes=causes,
        cause_matrix=cause_matrix,
        feature_names=tuple(feature_names),
        parent_vars=tuple(parent_vars),
        risk_weights=risk_w,
        risk_bias=risk_b,
        condition_weights=cond_w,
        condition_bias=cond_b,
        findings=kb.findings,
        finding_leak=f_leak,
        finding_link=f_link,
        labs=cond_labs,
        lab_leak=l_leak,
        lab_link=l_link,
        parent_labs=tuple(lab for lab in kb.labs if lab.parent),
    )


def lab_bin_probability(lab: Lab, value: np.ndarray, abnormal: bool, lower: float, upper: float) -> np.ndarray:
    """P(a lab rounds to `value` | its normal or abnormal distribution), exactly."""
    dist = lab.abnormal if abnormal else lab.normal
    lo = np.maximum(value - lab.step / 2, lower)
    hi = np.minimum(value + lab.step / 2, upper)
    if lab.scale == "log":
        with np.errstate(divide="ignore"):
            to_log = np.log
            return truncated_normal_mass(
                to_log(lo),
                to_log(hi),
                dist.mean,
                dist.sd,
                to_log(lower) if lower > 0 else -np.inf,
                np.log(upper),
            )
    return truncated_normal_mass(lo, hi, dist.mean, dist.sd, lower, upper)


KNOWN_LAB_VALUES = 16384  # values per lab whose likelihoods are kept (a lab holds a few thousand over a file)
_KNOWN_LABS: dict[tuple, KeptRows] = {}  # (lab, lower, upper) -> its likelihoods at the values met so far


def lab_likelihoods(lab: Lab, values: np.ndarray, lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """`lab_bin_probability` under the abnormal and the normal distribution at each of `values`
    (distinct, none blank), each value computed once per process: a scorer meets a lab's few
    thousand values chunk after chunk. The function works value by value, so a kept value is the
    one computed afresh, bit for bit."""
    key = (lab, lower, upper)
    kept = _KNOWN_LABS.get(key)
    if kept is None:
        if len(_KNOWN_LABS) >= 256:  # knowledge bases compiled over and over (tests): start afresh
            _KNOWN_LABS.clear()
        kept = _KNOWN_LABS[key] = KeptRows(width=2)
    both, hit = kept.look_up(values)
    new = values[~hit]
    if len(new):
        made = np.column_stack(
            [lab_bin_probability(lab, new, True, lower, upper), lab_bin_probability(lab, new, False, lower, upper)]
        )
        both[~hit] = made
        kept.keep(new, made, bound=KNOWN_LAB_VALUES)
    return both[:, 0], both[:, 1]


@cache
def default_model(population: str = "general") -> CompiledModel:
    """The project's knowledge base compiled for a population, once per process."""
    return compile_model(default_knowledge_base(), population)
