"""The knowledge base: data/knowledge_base.yaml loaded into typed objects, validated and hashed.

Loading checks every name against the intake schema, every probability against [0, 1],
that every relation cites a known seed passage, that no link is given twice and that no
mapping has a key it does not read (a typo); an error names the offending entry.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cache
from itertools import zip_longest
from pathlib import Path
from typing import Any

import yaml

from pipeline.schema import DATA_DIR, Schema, default_schema

KB_PATH = DATA_DIR / "knowledge_base.yaml"
SUPPORTED_SCHEMA_VERSIONS = (1,)
AGE_FACTOR = "age_per_decade"
AGE_CENTER, AGE_PER = 50.0, 10.0
COMPARATORS = (">=", ">", "<=", "<")
# The keys each kind of mapping may have; anything else is a typo and an error.
TOP_KEYS = (
    "schema_version", "seed_file", "passages", "bands", "populations", "complaint", "risk_factors",
    "conditions", "findings", "labs", "blank_rates", "specialists", "red_flags", "triage_default",
    "tips",
)  # fmt: skip
RATIONALE = ("source", "assumed")
PASSAGE_KEYS = ("section", "quote")
BAND_KEYS = ("cuts", "labels")
POPULATION_KEYS = ("description", "assumed", "risk_factor_log_odds_shift")  # + the person fields
NUMERIC_KEYS = ("mean", "sd", "min", "max", "step")
DURATION_KEYS = ("median", "sd_log", "min", "max", "step")
NODE_KEYS = ("name", "base_rate", "effects", *RATIONALE)
EFFECT_KEYS = ("factor", "log_odds", *RATIONALE)
LINK_KEYS = ("condition", "p", *RATIONALE)
FINDING_KEYS = ("name", "field", "leak", "links", *RATIONALE)
FINDING_KIND_KEYS = {"category": ("present", "absent"), "integer": ("present_range", "absent_range")}
LAB_KEYS = ("name", "scale", "step", "normal", "abnormal", "leak", "links", "parent", *RATIONALE)
DISTRIBUTION_KEYS = ("mean", "sd")
BLANK_RATE_KEYS = ("by_group", "by_field", *RATIONALE)
SPECIALIST_KEYS = ("first", "threshold", "by_cause", *RATIONALE)
BY_CAUSE_KEYS = ("cause", "specialist", "source")
RED_FLAG_KEYS = ("name", "triage", "when", *RATIONALE)
TRIAGE_DEFAULT_KEYS = ("routine_if_any_condition_at_least", *RATIONALE)
TIP_KEYS = ("number", "title", "causes", "source")


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
    source: Passage
    assumed: str


@dataclass(frozen=True)
class LogisticNode:
    """A yes/no risk factor or a condition: logistic in the factors before it."""

    name: str
    base_rate: float
    effects: tuple[Effect, ...]
    source: Passage
    assumed: str
    cause: str = ""

    @property
    def base_log_odds(self) -> float:
        return math.log(self.base_rate / (1.0 - self.base_rate))


@dataclass(frozen=True)
class Link:
    condition: str
    p: float
    source: Passage
    assumed: str


@dataclass(frozen=True)
class Finding:
    """A yes/no finding: noisy-OR of conditions with a leak, read from one form field."""

    name: str
    field: str
    leak: float
    links: tuple[Link, ...]
    source: Passage
    assumed: str
    present: str = "yes"
    absent: str = "no"
    present_range: tuple[int, int] | None = None
    absent_range: tuple[int, int] | None = None


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
    source: Passage
    assumed: str
    leak: float = 0.0
    links: tuple[Link, ...] = ()
    parent: str = ""


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
class DurationModel:
    median: float
    sd_log: float
    min: float
    max: float
    step: float


@dataclass(frozen=True)
class RedFlag:
    name: str
    triage: str
    when: dict
    source: Passage
    assumed: str


@dataclass(frozen=True)
class Tip:
    number: int
    title: str
    causes: tuple[str, ...]
    source: Passage


@dataclass(frozen=True)
class KnowledgeBase:
    schema_version: int
    passages: dict[str, Passage]
    bands: dict[str, Band]
    populations: dict[str, Population]
    duration: DurationModel
    risk_factors: tuple[LogisticNode, ...]
    conditions: tuple[LogisticNode, ...]
    findings: tuple[Finding, ...]
    labs: tuple[Lab, ...]
    blank_rates: dict[str, float]
    specialist_first: str
    specialist_threshold: float
    specialist_by_cause: dict[str, str]
    red_flags: tuple[RedFlag, ...]
    routine_threshold: float
    tips: tuple[Tip, ...]
    sha256: str
    schema: Schema = field(repr=False)

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


class _Reader:
    """Walks the raw YAML, remembering where it is for error messages."""

    def __init__(self, raw: dict, schema: Schema):
        self.raw = raw
        self.schema = schema
        self.passages: dict[str, Passage] = {}

    def fail(self, where: str, message: str) -> None:
        raise KnowledgeBaseError(f"knowledge base: {where}: {message}")

    def need(self, entry: dict, key: str, where: str) -> Any:
        if not isinstance(entry, dict) or key not in entry or entry[key] in (None, ""):
            self.fail(where, f"missing `{key}`")
        return entry[key]

    def check_keys(self, entry: Any, allowed: tuple[str, ...], where: str) -> None:
        if not isinstance(entry, dict):
            self.fail(where, f"must be a mapping, got {entry!r}")
        unknown = sorted(str(k) for k in entry if k not in allowed)
        if unknown:
            self.fail(where, f"unknown key(s) {unknown} (allowed: {', '.join(allowed)})")

    def number(self, entry: dict, key: str, where: str) -> float:
        value = self.need(entry, key, where)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            self.fail(where, f"`{key}` must be a finite number, got {value!r}")
        return float(value)

    def probability(self, entry: dict, key: str, where: str, *, open_interval: bool = False) -> float:
        value = self.number(entry, key, where)
        lo_ok = value > 0 if open_interval else value >= 0
        hi_ok = value < 1 if open_interval else value <= 1
        if not (lo_ok and hi_ok):
            interval = "(0, 1)" if open_interval else "[0, 1]"
            self.fail(where, f"`{key}` = {entry[key]} is outside {interval}")
        return float(value)

    def source(self, entry: dict, where: str) -> Passage:
        ref = self.need(entry, "source", where)
        if ref not in self.passages:
            self.fail(where, f"source {ref!r} is not a passage of the seed")
        return self.passages[ref]

    def assumed(self, entry: dict, where: str) -> str:
        text = self.need(entry, "assumed", where)
        if not isinstance(text, str) or not text.strip():
            self.fail(where, "`assumed` needs a one-line rationale")
        return text


def _passages(r: _Reader) -> None:
    for pid, entry in (r.raw.get("passages") or {}).items():
        where = f"passages.{pid}"
        r.check_keys(entry, PASSAGE_KEYS, where)
        r.passages[pid] = Passage(
            id=pid,
            section=str(r.need(entry, "section", where)),
            quote=str(r.need(entry, "quote", where)),
        )
    if not r.passages:
        r.fail("passages", "no seed passages")


def _bands(r: _Reader) -> dict[str, Band]:
    bands = {}
    for name, entry in (r.raw.get("bands") or {}).items():
        where = f"bands.{name}"
        if name not in r.schema.column_names or r.schema.column(name).kind != "number":
            r.fail(where, f"{name!r} is not a number column of the intake form")
        r.check_keys(entry, BAND_KEYS, where)
        cuts = tuple(float(c) for c in r.need(entry, "cuts", where))
        labels = tuple(str(v) for v in r.need(entry, "labels", where))
        if len(labels) != len(cuts) + 1 or list(cuts) != sorted(cuts):
            r.fail(where, "needs increasing cuts and one more label than cuts")
        bands[name] = Band(field=name, cuts=cuts, labels=labels)
    return bands


def _numeric(r: _Reader, entry: dict, where: str) -> NumericDistribution:
    r.check_keys(entry, NUMERIC_KEYS, where)
    values = {k: r.number(entry, k, where) for k in NUMERIC_KEYS}
    if values["sd"] <= 0 or values["step"] <= 0 or values["min"] >= values["max"]:
        r.fail(where, "needs sd > 0, step > 0 and min < max")
    return NumericDistribution(**values)


def _populations(r: _Reader, bands: dict[str, Band]) -> dict[str, Population]:
    person = [c for c in r.schema.columns_of(group="person")]
    pops = {}
    for name, entry in (r.raw.get("populations") or {}).items():
        where = f"populations.{name}"
        r.check_keys(entry, (*(c.name for c in person), *POPULATION_KEYS), where)
        r.assumed(entry, where)
        numeric, categorical = {}, {}
        for col in person:
            spec = r.need(entry, col.name, where)
            w = f"{where}.{col.name}"
            if col.kind in ("integer", "number"):
                numeric[col.name] = dist = _numeric(r, spec, w)
                if not col.min <= dist.min < dist.max <= col.max:
                    r.fail(w, f"min and max must lie within the schema's [{col.min:g}, {col.max:g}]")
                if col.name != "age" and col.name not in bands:
                    r.fail(w, "a numeric person field must have a band")
                continue
            levels = col.categories if col.kind == "category" else ("yes", "no")
            if set(spec) != set(levels):
                r.fail(w, f"probabilities must be given for exactly {list(levels)}")
            probs = {lvl: r.probability(spec, lvl, w) for lvl in levels}
            if abs(sum(probs.values()) - 1.0) > 1e-9:
                r.fail(w, f"probabilities sum to {sum(probs.values())}, not 1")
            categorical[col.name] = probs
        shift, shifts = {}, entry.get("risk_factor_log_odds_shift") or {}
        for rf in shifts:
            if rf not in r.schema.column_names:
                r.fail(f"{where}.risk_factor_log_odds_shift", f"unknown risk factor {rf!r}")
            shift[rf] = r.number(shifts, rf, f"{where}.risk_factor_log_odds_shift")
        pops[name] = Population(
            name=name,
            description=str(entry.get("description", "")),
            numeric=numeric,
            categorical=categorical,
            risk_factor_shift=shift,
        )
    if "general" not in pops:
        r.fail("populations", "a `general` population is required")
    return pops


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


def _logistic_nodes(r: _Reader, key: str, known_factors: list[str], *, grows: bool) -> tuple[LogisticNode, ...]:
    """Risk factors (each becomes a factor for later ones) or conditions."""
    nodes, seen = [], set()
    condition_causes = {c: cause.name for cause in r.schema.causes for c in cause.conditions}
    for i, entry in enumerate(r.raw.get(key) or []):
        name = r.need(entry, "name", f"{key}[{i}]")
        where = f"{key}[{i}] {name!r}"
        if name in seen:
            r.fail(where, "defined twice")
        seen.add(name)
        r.check_keys(entry, NODE_KEYS if key == "risk_factors" else (*NODE_KEYS, "cause"), where)
        if key == "risk_factors":
            col = r.schema.column(name) if name in r.schema.column_names else None
            if col is None or col.group not in ("history", "medication"):
                r.fail(where, "not a history or medication field of the intake form")
            cause = ""
        else:
            if name not in condition_causes:
                r.fail(where, "not one of the schema's 21 conditions")
            cause = r.need(entry, "cause", where)
            if cause != condition_causes[name]:
                r.fail(where, f"cause {cause!r} differs from the schema's {condition_causes[name]!r}")
        effects, factors = [], set()
        for j, eff in enumerate(entry.get("effects") or []):
            w = f"{where} effect[{j}]"
            r.check_keys(eff, EFFECT_KEYS, w)
            factor = r.need(eff, "factor", w)
            if factor not in known_factors:
                r.fail(w, f"unknown factor {factor!r} (or not defined before {name!r})")
            if factor in factors:
                r.fail(w, f"duplicate effect of {factor!r}")
            factors.add(factor)
            log_odds = r.number(eff, "log_odds", w)
            effects.append(Effect(factor, log_odds, r.source(eff, w), r.assumed(eff, w)))
        nodes.append(
            LogisticNode(
                name=name,
                base_rate=r.probability(entry, "base_rate", where, open_interval=True),
                effects=tuple(effects),
                source=r.source(entry, where),
                assumed=r.assumed(entry, where),
                cause=cause,
            )
        )
        if grows:
            known_factors.append(name)
    return tuple(nodes)


def _links(r: _Reader, entry: dict, where: str, conditions: set[str]) -> tuple[Link, ...]:
    links, seen = [], set()
    for j, link in enumerate(entry.get("links") or []):
        w = f"{where} link[{j}]"
        r.check_keys(link, LINK_KEYS, w)
        cond = r.need(link, "condition", w)
        if cond not in conditions:
            r.fail(w, f"unknown condition {cond!r}")
        if cond in seen:
            r.fail(w, f"duplicate link from {cond!r}")
        seen.add(cond)
        links.append(Link(cond, r.probability(link, "p", w), r.source(link, w), r.assumed(link, w)))
    return tuple(links)


def _findings(r: _Reader, conditions: set[str]) -> tuple[Finding, ...]:
    findings, fields = [], set()
    for i, entry in enumerate(r.raw.get("findings") or []):
        name = r.need(entry, "name", f"findings[{i}]")
        where = f"findings[{i}] {name!r}"
        fld = r.need(entry, "field", where)
        if fld not in r.schema.column_names:
            r.fail(where, f"unknown field {fld!r}")
        if fld in fields:
            r.fail(where, f"field {fld!r} is read by two findings")
        fields.add(fld)
        col = r.schema.column(fld)
        r.check_keys(entry, (*FINDING_KEYS, *FINDING_KIND_KEYS.get(col.kind, ())), where)
        extra: dict[str, Any] = {}
        if col.kind == "category":
            extra = {
                "present": r.need(entry, "present", where),
                "absent": r.need(entry, "absent", where),
            }
            if {extra["present"], extra["absent"]} != set(col.categories):
                r.fail(where, f"present/absent must be the categories {list(col.categories)}")
        elif col.kind == "integer":
            pr = tuple(int(v) for v in r.need(entry, "present_range", where))
            ar = tuple(int(v) for v in r.need(entry, "absent_range", where))
            if not (col.min <= ar[0] <= ar[1] < pr[0] <= pr[1] <= col.max):
                r.fail(where, "absent_range must lie below present_range, within the field's bounds")
            extra = {"present_range": pr, "absent_range": ar}
        elif col.kind != "yes_no":
            r.fail(where, f"field {fld!r} must be yes/no, a category or an integer")
        findings.append(
            Finding(
                name=name,
                field=fld,
                leak=r.probability(entry, "leak", where),
                links=_links(r, entry, where, conditions),
                source=r.source(entry, where),
                assumed=r.assumed(entry, where),
                **extra,
            )
        )
    return tuple(findings)


def _labs(r: _Reader, conditions: set[str], risk_factors: set[str]) -> tuple[Lab, ...]:
    labs, seen = [], set()
    for i, entry in enumerate(r.raw.get("labs") or []):
        name = r.need(entry, "name", f"labs[{i}]")
        where = f"labs[{i}] {name!r}"
        col = r.schema.column(name) if name in r.schema.column_names else None
        if col is None or col.group != "lab":
            r.fail(where, "not a lab column of the intake form")
        if name in seen:
            r.fail(where, "defined twice")
        seen.add(name)
        r.check_keys(entry, LAB_KEYS, where)
        scale = r.need(entry, "scale", where)
        if scale not in ("log", "linear"):
            r.fail(where, f"scale must be log or linear, got {scale!r}")
        dists = {}
        for part in ("normal", "abnormal"):
            spec, w = r.need(entry, part, where), f"{where}.{part}"
            r.check_keys(spec, DISTRIBUTION_KEYS, w)
            dists[part] = Distribution(r.number(spec, "mean", w), r.number(spec, "sd", w))
            if dists[part].sd <= 0:
                r.fail(w, "sd must be positive")
        parent = entry.get("parent", "") or ""
        if parent and parent not in risk_factors:
            r.fail(where, f"parent {parent!r} is not a risk factor")
        if parent and entry.get("links"):
            r.fail(where, "a lab has either a parent or condition links, not both")
        step = r.number(entry, "step", where)
        if step <= 0:
            r.fail(where, "step must be positive")
        labs.append(
            Lab(
                name=name,
                scale=scale,
                step=step,
                normal=dists["normal"],
                abnormal=dists["abnormal"],
                source=r.source(entry, where),
                assumed=r.assumed(entry, where),
                leak=0.0 if parent else r.probability(entry, "leak", where),
                links=() if parent else _links(r, entry, where, conditions),
                parent=parent,
            )
        )
    return tuple(labs)


def _blank_rates(r: _Reader) -> dict[str, float]:
    entry = r.need(r.raw, "blank_rates", "blank_rates")
    r.check_keys(entry, BLANK_RATE_KEYS, "blank_rates")
    r.source(entry, "blank_rates")
    r.assumed(entry, "blank_rates")
    by_group = r.need(entry, "by_group", "blank_rates")
    groups = tuple(dict.fromkeys(col.group for col in r.schema.columns))
    r.check_keys(by_group, groups, "blank_rates.by_group")
    rates = {}
    for col in r.schema.columns:
        if col.required:
            rates[col.name] = 0.0
            continue
        if col.group not in by_group:
            r.fail("blank_rates.by_group", f"no rate for group {col.group!r}")
        rates[col.name] = r.probability(by_group, col.group, "blank_rates.by_group")
    for name in entry.get("by_field") or {}:
        if name not in r.schema.column_names:
            r.fail("blank_rates.by_field", f"unknown field {name!r}")
        if r.schema.column(name).required:
            r.fail("blank_rates.by_field", f"{name!r} is required and cannot be blank")
        rates[name] = r.probability(entry["by_field"], name, "blank_rates.by_field")
    return rates


def _check_test(r: _Reader, test: Any, where: str, conditions: set[str]) -> None:
    """Validate one red-flag test (recursively)."""
    if not isinstance(test, dict) or not test:
        r.fail(where, f"a test must be a mapping, got {test!r}")
    if "all" in test or "any" in test:
        key = "all" if "all" in test else "any"
        if len(test) != 1 or not isinstance(test[key], list) or not test[key]:
            r.fail(where, f"`{key}` takes a non-empty list and nothing else")
        for k, sub in enumerate(test[key]):
            _check_test(r, sub, f"{where}.{key}[{k}]", conditions)
    elif "not" in test:
        if len(test) != 1:
            r.fail(where, "`not` takes one test and nothing else")
        _check_test(r, test["not"], f"{where}.not", conditions)
    elif "prob" in test or "cause" in test:
        _check_probability_test(r, test, where, conditions)
    else:
        _check_field_test(r, test, where)


def _check_probability_test(r: _Reader, test: dict, where: str, conditions: set[str]) -> None:
    """{prob: CONDITION, ">=": p} or {cause: CAUSE, ">=": p}."""
    kind = "prob" if "prob" in test else "cause"
    pool = conditions if kind == "prob" else set(r.schema.cause_names)
    if test[kind] not in pool:
        r.fail(where, f"unknown {'condition' if kind == 'prob' else 'cause'} {test[kind]!r}")
    comparators = [k for k in test if k in COMPARATORS]
    if len(comparators) != 1 or len(test) != 2:
        r.fail(where, f"a probability test needs one comparator of {COMPARATORS}")
    r.probability(test, comparators[0], where)


def _check_field_test(r: _Reader, test: dict, where: str) -> None:
    """{field: F, is: yes|no}, {field: F, in: [values]} or {field: F, COMPARATOR: number}."""
    fld = r.need(test, "field", where)
    if fld not in r.schema.column_names:
        r.fail(where, f"unknown field {fld!r}")
    col = r.schema.column(fld)
    ops = [k for k in test if k != "field"]
    if len(ops) != 1 or ops[0] not in ("is", "in", *COMPARATORS):
        r.fail(where, f"unknown test {test!r}")
    op, value = ops[0], test[ops[0]]
    if op == "is":
        if col.kind != "yes_no" or value not in ("yes", "no"):
            r.fail(where, f"`is` needs a yes/no field and 'yes' or 'no' (field {fld!r})")
    elif op == "in":
        values_ok = isinstance(value, list) and set(value) <= set(col.categories)
        if col.kind != "category" or not values_ok:
            r.fail(where, f"`in` needs values among {list(col.categories)} of {fld!r}")
    elif col.kind not in ("integer", "number"):
        r.fail(where, f"a comparison needs a numeric field, {fld!r} is {col.kind}")
    else:
        r.number(test, op, where)


def _red_flags(r: _Reader, conditions: set[str]) -> tuple[RedFlag, ...]:
    flags, seen = [], set()
    for i, entry in enumerate(r.raw.get("red_flags") or []):
        name = r.need(entry, "name", f"red_flags[{i}]")
        where = f"red_flags[{i}] {name!r}"
        if name in seen:
            r.fail(where, "defined twice")
        seen.add(name)
        r.check_keys(entry, RED_FLAG_KEYS, where)
        triage = r.need(entry, "triage", where)
        if triage not in r.schema.triage_levels:
            r.fail(where, f"triage {triage!r} is not one of {list(r.schema.triage_levels)}")
        when = r.need(entry, "when", where)
        _check_test(r, when, f"{where}.when", conditions)
        flags.append(RedFlag(name, triage, when, r.source(entry, where), r.assumed(entry, where)))
    return tuple(flags)


def _duration(r: _Reader) -> DurationModel:
    where = "complaint.symptom_duration_weeks"
    complaint = r.need(r.raw, "complaint", "complaint")
    r.check_keys(complaint, ("symptom_duration_weeks",), "complaint")
    dur = r.need(complaint, "symptom_duration_weeks", "complaint")
    r.check_keys(dur, (*DURATION_KEYS, *RATIONALE), where)
    r.source(dur, where)
    r.assumed(dur, where)
    v = {k: r.number(dur, k, where) for k in DURATION_KEYS}
    if not (v["median"] > 0 and v["sd_log"] > 0 and v["step"] > 0 and v["min"] < v["max"]):
        r.fail(where, "needs median > 0, sd_log > 0, step > 0 and min < max")
    return DurationModel(**v)


def _specialists(r: _Reader) -> tuple[dict, dict[str, str]]:
    """The `specialists` entry and its specialist for each cause."""
    spec = r.need(r.raw, "specialists", "specialists")
    r.check_keys(spec, SPECIALIST_KEYS, "specialists")
    by_cause: dict[str, str] = {}
    for k, entry in enumerate(r.need(spec, "by_cause", "specialists")):
        w = f"specialists.by_cause[{k}]"
        r.check_keys(entry, BY_CAUSE_KEYS, w)
        cause, who = r.need(entry, "cause", w), r.need(entry, "specialist", w)
        if cause not in r.schema.cause_names:
            r.fail(w, f"unknown cause {cause!r}")
        if cause in by_cause:
            r.fail(w, f"cause {cause!r} given twice")
        if who not in r.schema.specialists:
            r.fail(w, f"unknown specialist {who!r}")
        r.source(entry, w)
        by_cause[cause] = who
    if set(by_cause) != set(r.schema.cause_names):
        r.fail("specialists.by_cause", "every cause needs a specialist")
    first = r.need(spec, "first", "specialists")
    if first not in r.schema.specialists:
        r.fail("specialists", f"unknown specialist {first!r}")
    r.source(spec, "specialists")
    r.assumed(spec, "specialists")
    return spec, by_cause


def _triage_default(r: _Reader) -> dict:
    entry = r.need(r.raw, "triage_default", "triage_default")
    r.check_keys(entry, TRIAGE_DEFAULT_KEYS, "triage_default")
    r.source(entry, "triage_default")
    r.assumed(entry, "triage_default")
    return entry


def _tips(r: _Reader) -> tuple[Tip, ...]:
    tips, numbers = [], set()
    for k, entry in enumerate(r.raw.get("tips") or []):
        w = f"tips[{k}]"
        r.check_keys(entry, TIP_KEYS, w)
        number = r.need(entry, "number", w)
        if not isinstance(number, int) or isinstance(number, bool):
            r.fail(w, f"`number` must be an integer, got {number!r}")
        if number in numbers:
            r.fail(w, f"tip number {number} given twice")
        numbers.add(number)
        causes = tuple(r.need(entry, "causes", w))
        if not set(causes) <= set(r.schema.cause_names):
            r.fail(w, f"unknown causes {sorted(set(causes) - set(r.schema.cause_names))}")
        tips.append(Tip(number, r.need(entry, "title", w), causes, r.source(entry, w)))
    return tuple(tips)


def _check_condition_order(r: _Reader, conditions: tuple[LogisticNode, ...]) -> None:
    names = [c.name for c in conditions]
    for k, (expected, found) in enumerate(zip_longest(r.schema.conditions, names)):
        if expected != found:
            r.fail(
                "conditions",
                "must list the schema's conditions in schema order; "
                f"conditions[{k}] is {found!r}, expected {expected!r}",
            )


def parse_knowledge_base(text: bytes | str, schema: Schema | None = None) -> KnowledgeBase:
    """Parse and validate knowledge-base YAML text."""
    schema = schema or default_schema()
    data = text.encode() if isinstance(text, str) else text
    raw = yaml.safe_load(data)
    if not isinstance(raw, dict):
        raise KnowledgeBaseError("knowledge base: the file is not a YAML mapping")
    r = _Reader(raw, schema)
    version = raw.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        r.fail("schema_version", f"{version!r} is not supported ({SUPPORTED_SCHEMA_VERSIONS})")
    r.check_keys(raw, TOP_KEYS, "top level")
    _passages(r)
    bands = _bands(r)
    populations = _populations(r, bands)
    duration = _duration(r)

    factors = person_factor_names(schema, bands)
    risk_factors = _logistic_nodes(r, "risk_factors", factors, grows=True)
    for pop in populations.values():
        unknown = set(pop.risk_factor_shift) - {n.name for n in risk_factors}
        if unknown:
            r.fail(f"populations.{pop.name}", f"shift of unmodelled risk factors {sorted(unknown)}")
    conditions = _logistic_nodes(r, "conditions", factors, grows=False)
    _check_condition_order(r, conditions)
    cond_set = set(schema.conditions)
    rf_set = {n.name for n in risk_factors}
    findings = _findings(r, cond_set)
    labs = _labs(r, cond_set, rf_set)
    modelled = (
        rf_set
        | {f.field for f in findings}
        | {lab.name for lab in labs}
        | set(populations["general"].numeric)
        | set(populations["general"].categorical)
        | {"symptom_duration_weeks"}
    )
    unmodelled = [c for c in schema.column_names if c not in modelled]
    if unmodelled:
        r.fail("model", f"intake fields with no generative model: {unmodelled}")
    spec, by_cause = _specialists(r)
    triage_default = _triage_default(r)

    return KnowledgeBase(
        schema_version=int(version),
        passages=r.passages,
        bands=bands,
        populations=populations,
        duration=duration,
        risk_factors=risk_factors,
        conditions=conditions,
        findings=findings,
        labs=labs,
        blank_rates=_blank_rates(r),
        specialist_first=spec["first"],
        specialist_threshold=r.probability(spec, "threshold", "specialists"),
        specialist_by_cause=by_cause,
        red_flags=_red_flags(r, cond_set),
        routine_threshold=r.probability(triage_default, "routine_if_any_condition_at_least", "triage_default"),
        tips=_tips(r),
        sha256=hashlib.sha256(data).hexdigest(),
        schema=schema,
    )


def load_knowledge_base(path: Path = KB_PATH, schema: Schema | None = None) -> KnowledgeBase:
    """Read, validate and hash the knowledge-base file."""
    return parse_knowledge_base(Path(path).read_bytes(), schema)


@cache
def default_knowledge_base() -> KnowledgeBase:
    """The project's knowledge base, loaded once per process."""
    return load_knowledge_base()
