"""The rates the knowledge base's notes state (`stated_rates:`) hold in a large sample.

Each stated rate is a range [low, high] for the share of people of a population, among those
matching `given`, who have a risk factor or a condition label. One sample per population is
drawn once; a rate passes if the sampled share lies in the range widened by four binomial
standard errors (so a range is checked to within sampling noise, not beyond it).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from pipeline.contract.knowledge import KnowledgeBase, LogisticNode, StatedRate
from pipeline.contract.loader import default_knowledge_base
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

N_ROWS = 400_000
SAMPLE_SEED = 20_240_611
Z = 4.0  # standard errors of slack on each side of a stated range
MIN_ROWS = 250  # fewer matching rows than this and the check would say little

KB = default_knowledge_base()


def stated_rates(kb: KnowledgeBase) -> list[tuple[str, LogisticNode, StatedRate]]:
    out = []
    for group in ("risk_factors", "conditions"):
        for node in getattr(kb, group):
            out.extend((f"{node.name}[{k}]", node, rate) for k, rate in enumerate(node.stated_rates))
    return out


def column_of(kb: KnowledgeBase, node: LogisticNode) -> str:
    return f"label_{node.name}" if node.name in kb.condition_names else node.name


def sampled(frame: pd.DataFrame, column: str, rate: StatedRate) -> tuple[int, int]:
    """(people with the node, people matching `given`), blanks of the node or of `given` left out."""
    mask = np.ones(len(frame), dtype=bool)
    age = frame["age"].to_numpy(dtype=float)
    if rate.age_at_least is not None:
        mask &= age >= rate.age_at_least
    if rate.age_below is not None:
        mask &= age < rate.age_below
    for fld, value in rate.given:
        col = frame[fld]
        if isinstance(col.dtype, pd.CategoricalDtype):
            mask &= (col == value).to_numpy(dtype=bool)
        else:
            mask &= col.to_numpy(dtype=float) == (1.0 if value == "yes" else 0.0)
    y = frame[column].to_numpy(dtype=float)[mask]
    y = y[~np.isnan(y)]
    return int(y.sum()), len(y)


@pytest.fixture(scope="module")
def samples() -> dict[str, pd.DataFrame]:
    populations = sorted({rate.population for _, _, rate in stated_rates(KB)})
    return {pop: generate_frame(default_model(pop), N_ROWS, seed=SAMPLE_SEED) for pop in populations}


RATES = stated_rates(KB)


def test_there_are_stated_rates_to_check():
    assert len(RATES) >= 30
    assert {node.name for _, node, _ in RATES} >= {
        "peripheral_artery_disease",
        "parkinsons_diagnosis",
        "prior_stroke",
        "deep_vein_thrombosis",
        "peripheral_neuropathy",
        "parkinsons_disease",
    }


@pytest.mark.parametrize(("name", "node", "rate"), RATES, ids=[name for name, _, _ in RATES])
def test_stated_rate_holds_in_a_large_sample(samples, name, node, rate):
    frame = samples[rate.population]
    hits, n = sampled(frame, column_of(KB, node), rate)
    assert n >= MIN_ROWS, f"{name}: only {n} rows match {rate}; the check would say little"
    share = hits / n
    p = min(max(share, rate.low), rate.high)  # the nearest rate the note allows
    se = np.sqrt(max(p * (1 - p), 1.0 / n) / n)
    assert rate.low - Z * se <= share <= rate.high + Z * se, (
        f"{name}: sampled {share:.4f} ({hits}/{n}) outside the stated [{rate.low}, {rate.high}] "
        f"(+-{Z} s.e. = {Z * se:.4f}); given {dict(rate.given)}, age "
        f"[{rate.age_at_least}, {rate.age_below}), population {rate.population}"
    )


def test_every_note_that_states_a_percentage_has_a_stated_rate():
    """A percentage in a node's or its effects' `assumed:` note is a rate claim: it must be checked."""
    unchecked = []
    for group in ("risk_factors", "conditions"):
        for node in getattr(KB, group):
            notes = [node.assumed, *(eff.assumed for eff in node.effects)]
            if any(re.search(r"\d\s*%", text) for text in notes) and not node.stated_rates:
                unchecked.append(node.name)
    assert not unchecked, f"notes state a percentage but the node has no stated_rates: {unchecked}"
