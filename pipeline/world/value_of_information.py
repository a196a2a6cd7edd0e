"""What to ask next: the blank fields whose answer is expected to tell most about the conditions.

For a form with evidence e and a blank field F, the value of asking F is the expected reduction
of the summed binary entropy of the conditions under the knowledge base's joint model:

    gain(F) = sum_c H(P(c | e)) - sum_v P(F = v | e) sum_c H(P(c | e, F = v)).

Every P(c | e, F = v) is the exact oracle posterior (pipeline.world.oracle) of the form with F
set to v, over a partition of F's values as the network reads them: yes/no; each category; each
band of a banded person field; below or from the threshold of an integer finding (severity); and
for a lab (and the complaint's duration, read like one) which side of the midpoint between its
normal and abnormal means the value falls, as exact interval evidence. The answer's distribution
P(F = v | e) comes from the same posteriors: the oracle's marginals satisfy
P(c | e) = sum_v P(v | e) P(c | e, F = v) exactly for the 21 conditions and 6 causes, so the
weights are the constrained least-squares solution of those 27 equations (outcomes with equal
posteriors are merged; they cannot change the gain). Where the posteriors barely move, the
weights are ill determined but the gain is ~0 whatever they are.

A sparse form has many blank fields; each costs one oracle row per outcome, so the fields are
first screened by how strongly the knowledge base links them to the conditions still uncertain
(link strength times the condition's entropy), and only the `shortlist` best are scored exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipeline.world.network import CompiledModel
from pipeline.world.oracle import posterior_probabilities

MIN_GAIN_BITS = 0.01  # a field whose answer is expected to tell less than this is not worth asking
SHORTLIST = 8  # blank fields per form scored exactly, after the screen


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _lab_split(lab, lower: float, upper: float) -> list[tuple[float, float]]:
    """Two intervals of a lab's range, split at the midpoint of its normal and abnormal means."""
    if lab.scale == "log":
        cut = float(np.exp((lab.normal.mean + lab.abnormal.mean) / 2))
    else:
        cut = (lab.normal.mean + lab.abnormal.mean) / 2
    cut = min(max(cut, lower), upper)
    return [(lower, cut), (cut, upper)]


@dataclasses.dataclass(frozen=True)
class _Question:
    field: str
    values: tuple  # typed values, one per outcome (a lab: interval midpoints)
    lab: object = None  # a lab: the Lab whose step is replaced by each interval's width
    intervals: tuple = ()
    link: np.ndarray | None = None  # (C,) how strongly the field bears on each condition, for the screen


def questions(model: CompiledModel) -> list[_Question]:
    """Every field the network reads, with a partition of its values."""
    schema = model.kb.schema
    c = model.n_conditions
    out = []
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "yes_no":
            values = (0.0, 1.0)
        elif col.kind == "category":
            values = tuple(col.categories)
        else:  # an integer finding: below its threshold, or from it
            values = (float(f.present_range[0] - 1), float(f.present_range[0]))
        out.append(_Question(f.field, values, link=model.finding_link[:, j]))
    for var in model.parent_vars:
        col = schema.column(var.name)
        weights = np.abs(model.condition_weights[[i for i in var.feature_index if i >= 0]]).max(axis=0)
        link = 1 - np.exp(-weights)  # a log-odds weight read as a strength in [0, 1), for the screen
        if var.kind == "category":
            values = tuple(col.categories)
        elif var.kind == "band":
            edges = [col.min, *model.kb.bands[var.name].cuts, col.max]
            values = tuple((lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:], strict=True))
        else:
            values = (0.0, 1.0)
        out.append(_Question(var.name, values, link=link))
    for j, lab in enumerate(model.labs):
        col = schema.column(lab.name)
        cuts = _lab_split(lab, col.min, col.max)
        out.append(_Question(lab.name, tuple((lo + hi) / 2 for lo, hi in cuts), lab, tuple(cuts), model.lab_link[:, j]))
    for lab in model.parent_labs:
        col = schema.column(lab.name)
        cuts = _lab_split(lab, col.min, col.max)
        strength = 1 - np.exp(-np.abs(model.condition_weights[model.feature_names.index(lab.parent)]))
        out.append(_Question(lab.name, tuple((lo + hi) / 2 for lo, hi in cuts), lab, tuple(cuts), strength))
    assert len({q.field for q in out}) == len(out), "a field read twice by the network"
    assert all(q.link is not None and q.link.shape == (c,) for q in out)
    return out


def _with_interval(model: CompiledModel, lab, lo: float, hi: float) -> CompiledModel:
    """The model with `lab` observed as the interval [lo, hi] (its value set to the midpoint)."""
    wide = dataclasses.replace(lab, step=hi - lo)
    if lab in model.labs:
        return dataclasses.replace(model, labs=tuple(wide if x is lab else x for x in model.labs))
    return dataclasses.replace(model, parent_labs=tuple(wide if x is lab else x for x in model.parent_labs))


def _outcome_weights(base: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """P(v | e) per outcome from P(c | e) = sum_v P(v | e) P(c | e, v): (pairs, V) from (pairs, K), (pairs, V, K)."""
    n, v, _ = outcomes.shape
    weights = np.empty((n, v))
    big = 1e3  # the row of ones, weighted so the weights sum to one
    for i in range(n):
        a = np.vstack([outcomes[i].T, np.full((1, v), big)])
        b = np.concatenate([base[i], [big]])
        w = np.linalg.lstsq(a, b, rcond=None)[0]
        w = np.clip(w, 0.0, None)
        weights[i] = w / w.sum() if w.sum() > 0 else np.full(v, 1.0 / v)
    return weights


class AskNext:
    """`ask_next` for typed forms: up to `max_fields` blank fields, most informative first."""

    def __init__(
        self, model: CompiledModel, max_fields: int = 3, shortlist: int = SHORTLIST, workers: int | None = None
    ):
        self.model, self.max_fields, self.shortlist, self.workers = model, max_fields, shortlist, workers
        self.questions = questions(model)
        self.links = np.stack([q.link for q in self.questions])  # (Q, C)

    def gains(self, typed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(gain in bits (n, Q), NaN where not scored; base posteriors (n, C))."""
        n, c = len(typed), self.model.n_conditions
        k = c + len(self.model.causes)
        base = posterior_probabilities(self.model, typed, workers=self.workers).to_numpy()[:, :k]
        blank = np.column_stack([typed[q.field].isna().to_numpy() for q in self.questions])  # (n, Q)
        screen = np.where(blank, _entropy_bits(base[:, :c]) @ self.links.T, -np.inf)
        order = np.argsort(-screen, axis=1, kind="stable")[:, : self.shortlist]
        pick = np.zeros_like(blank)
        np.put_along_axis(pick, order, True, axis=1)
        pick &= blank
        gains = np.full((n, len(self.questions)), np.nan)
        h_base = _entropy_bits(base[:, :c]).sum(axis=1)
        # One oracle call for every outcome of every plain question; one per lab interval.
        blocks, plain = [], []
        for qi, q in enumerate(self.questions):
            rows = np.flatnonzero(pick[:, qi])
            for vi, value in enumerate(q.values if len(rows) else ()):
                forms = typed.iloc[rows].copy()
                forms[q.field] = pd.Series([value] * len(rows), index=forms.index).astype(typed[q.field].dtype)
                (plain if q.lab is None else blocks).append((qi, vi, rows, forms))
        posts = {}
        if plain:
            frame = pd.concat([f for *_, f in plain], ignore_index=True)
            values = posterior_probabilities(self.model, frame, workers=self.workers).to_numpy()[:, :k]
            at = 0
            for qi, vi, rows, _ in plain:
                posts[qi, vi] = values[at : at + len(rows)]
                at += len(rows)
        for qi, vi, _, forms in blocks:
            q = self.questions[qi]
            model = _with_interval(self.model, q.lab, *q.intervals[vi])
            posts[qi, vi] = posterior_probabilities(model, forms, workers=self.workers).to_numpy()[:, :k]
        for qi, q in enumerate(self.questions):
            rows = np.flatnonzero(pick[:, qi])
            if not len(rows):
                continue
            post = np.stack([posts[qi, vi] for vi in range(len(q.values))], axis=1)  # (rows, V, K)
            weights = _outcome_weights(base[rows], post)
            after = (weights * _entropy_bits(post[:, :, :c]).sum(axis=2)).sum(axis=1)
            gains[rows, qi] = np.maximum(h_base[rows] - after, 0.0)
        return gains, base

    def __call__(self, typed: pd.DataFrame) -> list[list[str]]:
        gains, _ = self.gains(typed)
        filled = np.nan_to_num(gains, nan=-1.0)
        order = np.argsort(-filled, axis=1, kind="stable")[:, : self.max_fields]
        return [[self.questions[q].field for q in row if filled[r, q] >= MIN_GAIN_BITS] for r, row in enumerate(order)]
