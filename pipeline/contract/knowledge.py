"""The knowledge base as typed, frozen objects (loaded by pipeline.contract.loader).

Every relation carries the seed passage it rests on; every number an `assumed:` rationale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.contract.schema import Schema

AGE_FACTOR = "age_per_decade"
AGE_CENTER, AGE_PER = 50.0, 10.0


class KnowledgeBaseError(ValueError):
    """The knowledge base is malformed; the message names the entry."""


@dataclass(frozen=True)
class Passage:
    id: str
    section: str
    quote: str


@dataclass(frozen=True)
class Effect:
    factor: str
    log_odds: float
    source: Passage | None  # None when basis is clinical_assumption
    assumed: str
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class StatedRate:
    """A rate an `assumed:` note states: among the people of `population` matching `given`
    (fields equal to values, age in [age_at_least, age_below)), a share in [low, high] has the node."""

    given: tuple[tuple[str, str], ...]
    age_at_least: float | None
    age_below: float | None
    low: float
    high: float
    population: str = "general"


@dataclass(frozen=True)
class LogisticNode:
    """A yes/no risk factor or a condition: logistic in the factors before it."""

    name: str
    base_rate: float
    effects: tuple[Effect, ...]
    source: Passage | None
    assumed: str
    cause: str = ""
    basis: str = "seed"
    rationale: str = ""
    stated_rates: tuple[StatedRate, ...] = ()

    @property
    def base_log_odds(self) -> float:
        return math.log(self.base_rate / (1.0 - self.base_rate))


@dataclass(frozen=True)
class Link:
    condition: str
    p: float
    source: Passage | None
    assumed: str
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class Finding:
    """A yes/no finding: noisy-OR of conditions with a leak, read from one form field."""

    name: str
    field: str
    leak: float
    links: tuple[Link, ...]
    source: Passage | None
    assumed: str
    present: str = "yes"
    absent: str = "no"
    present_range: tuple[int, int] | None = None
    absent_range: tuple[int, int] | None = None
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class Distribution:
    mean: float
    sd: float


@dataclass(frozen=True)
class Lab:
    """A lab drawn from its normal or abnormal distribution."""

    name: str
    scale: str
    step: float
    normal: Distribution
    abnormal: Distribution
    source: Passage | None
    assumed: str
    leak: float = 0.0
    links: tuple[Link, ...] = ()
    parent: str = ""
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class Band:
    field: str
    cuts: tuple[float, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class NumericDistribution:
    """A normal distribution truncated to [min, max] and rounded to step."""

    mean: float
    sd: float
    min: float
    max: float
    step: float


@dataclass(frozen=True)
class Population:
    name: str
    description: str
    numeric: dict[str, NumericDistribution]
    categorical: dict[str, dict[str, float]]
    risk_factor_shift: dict[str, float]


@dataclass(frozen=True)
class RedFlag:
    name: str
    triage: str
    when: dict
    source: Passage | None  # None: a clinical assumption, see `rationale`
    assumed: str
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class TriageDefault:
    """The level when no red flag fires: `level`, or `self_care` only where the form shows a short,
    mild, benign presentation (`self_care_when`) and no condition reaches `not_self_care_at`."""

    level: str
    self_care_when: dict
    not_self_care_at: float
    source: Passage | None
    assumed: str
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class Tip:
    number: int
    title: str
    causes: tuple[str, ...]
    source: Passage | None
    basis: str = "seed"
    rationale: str = ""


@dataclass(frozen=True)
class KnowledgeBase:
    schema_version: int
    passages: dict[str, Passage]
    bands: dict[str, Band]
    populations: dict[str, Population]
    duration: Lab  # the complaint's duration in weeks: persistent (normal) or recent (abnormal)
    risk_factors: tuple[LogisticNode, ...]
    conditions: tuple[LogisticNode, ...]
    findings: tuple[Finding, ...]
    labs: tuple[Lab, ...]
    blank_rates: dict[str, float]
    specialist_first: str
    specialist_threshold: float
    specialist_by_cause: dict[str, str]
    red_flags: tuple[RedFlag, ...]
    triage_default: TriageDefault
    tips: tuple[Tip, ...]
    sha256: str
    schema: Schema = field(repr=False)

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    def basis_counts(self) -> dict[str, int]:
        """How many relations rest on a seed passage and how many on a stated clinical assumption."""
        return basis_counts(self)


def person_factor_names(schema: Schema, bands: dict[str, Band]) -> list[str]:
    """Factor names the person fields provide, e.g. `smoking=current`, `recent_immobilization`."""
    names = [AGE_FACTOR]
    for col in schema.columns_of(group="person"):
        if col.name == "age":
            continue
        if col.kind == "yes_no":
            names.append(col.name)
        elif col.kind == "category":
            names.extend(f"{col.name}={v}" for v in col.categories)
        else:
            names.extend(f"{col.name}={v}" for v in bands[col.name].labels)
    return names


def relations(kb: KnowledgeBase):
    """Every relation of the knowledge base that rests on something: (name, object with `source`)."""
    for group, nodes in (("risk factor", kb.risk_factors), ("condition", kb.conditions)):
        for node in nodes:
            yield f"{group} {node.name}", node
            for eff in node.effects:
                yield f"{group} {node.name} effect {eff.factor}", eff
    for item in (*kb.findings, *kb.labs, kb.duration):
        yield f"{item.name}", item
        for link in item.links:
            yield f"{item.name} link {link.condition}", link
    for flag in kb.red_flags:
        yield f"red flag {flag.name}", flag
    yield "triage default", kb.triage_default
    for tip in kb.tips:
        yield f"tip {tip.number}", tip


def basis_counts(kb: KnowledgeBase) -> dict[str, int]:
    """How many relations rest on a seed passage and how many on a stated clinical assumption."""
    counts = {"seed": 0, "clinical_assumption": 0}
    for _, rel in relations(kb):
        counts[rel.basis] += 1
    return counts


def basis_lines(kb: KnowledgeBase) -> list[str]:
    counts = basis_counts(kb)
    return [
        f"{counts['seed']} relations cite a seed passage that states them; {counts['clinical_assumption']} are "
        "clinical assumptions the seed does not state, each with its rationale (data/knowledge_base.yaml). "
        "Every number is an assumption with its own rationale (`assumed:`).",
    ]
