"""Risk factors, conditions, findings and labs: the layers of the generative network."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from pipeline.contract._kb_reader import (
    AGE_GIVEN,
    CERTAIN_LINK,
    DISTRIBUTION_KEYS,
    EFFECT_KEYS,
    FINDING_KEYS,
    FINDING_KIND_KEYS,
    FULL_FINDING_LEAK,
    LAB_KEYS,
    LINK_KEYS,
    NO_FINDING_LEAK,
    NO_LAB_LEAK,
    NODE_KEYS,
    STATED_RATE_KEYS,
    Reader,
)  # fmt: skip
from pipeline.contract.knowledge import (  # fmt: skip
    Distribution,
    Effect,
    Finding,
    Lab,
    Link,
    LogisticNode,
    StatedRate,
)


def read_logistic_nodes(r: Reader, key: str, known_factors: list[str], *, grows: bool) -> tuple[LogisticNode, ...]:
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
                r.fail(where, "not one of the schema's conditions")
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
            effects.append(Effect(factor, log_odds, **r.basis(eff, w), assumed=r.assumed(eff, w)))
        nodes.append(
            LogisticNode(
                name=name,
                base_rate=r.probability(entry, "base_rate", where, open_interval=True),
                effects=tuple(effects),
                **r.basis(entry, where),
                assumed=r.assumed(entry, where),
                stated_rates=read_stated_rates(r, entry, where, name),
                cause=cause,
            )
        )
        if grows:
            known_factors.append(name)
    return tuple(nodes)


def read_stated_rates(r: Reader, entry: dict, where: str, node: str) -> tuple[StatedRate, ...]:
    """`stated_rates: [{given: {FIELD: VALUE, age_at_least: A, age_below: B}, rate: [lo, hi],
    population: P}]`: the rates the node's notes state, checked against a sample by a test."""
    rates = []
    person = {c.name for c in r.schema.columns_of(group="person")}
    modelled = {n.get("name") for n in r.raw.get("risk_factors") or [] if isinstance(n, dict)} | person
    for k, spec in enumerate(entry.get("stated_rates") or []):
        w = f"{where} stated_rates[{k}]"
        r.check_keys(spec, STATED_RATE_KEYS, w)
        given = spec.get("given") or {}
        if not isinstance(given, dict):
            r.fail(w, f"`given` must be a mapping, got {given!r}")
        ages = {a: r.number(given, a, w) for a in AGE_GIVEN if a in given}
        if len(ages) == 2 and ages["age_at_least"] >= ages["age_below"]:
            r.fail(w, "`age_at_least` must be below `age_below`")
        fields = []
        for fld, value in given.items():
            if fld in AGE_GIVEN:
                continue
            col = r.schema.column(fld) if fld in r.schema.column_names else None
            if col is None or fld not in modelled or col.kind not in ("yes_no", "category") or fld == node:
                r.fail(w, f"`given` field {fld!r} is not a yes/no or category person field or risk factor")
            levels = col.categories if col.kind == "category" else ("yes", "no")
            if value not in levels:
                r.fail(w, f'`given` {fld}: {value!r} is not one of {list(levels)} (quote "yes" and "no")')
            fields.append((fld, value))
        rate = spec.get("rate")
        if not (isinstance(rate, list) and len(rate) == 2):
            r.fail(w, f"`rate` must be [low, high], got {rate!r}")
        low, high = (r.probability({"rate": v}, "rate", w) for v in rate)
        if low >= high:
            r.fail(w, f"`rate` [{low}, {high}] must have low < high")
        population = spec.get("population", "general")
        if population not in (r.raw.get("populations") or {}):
            r.fail(w, f"unknown population {population!r}")
        rates.append(StatedRate(tuple(fields), ages.get("age_at_least"), ages.get("age_below"), low, high, population))
    return tuple(rates)


def read_links(r: Reader, entry: dict, where: str, conditions: set[str]) -> tuple[Link, ...]:
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
        p = r.probability(link, "p", w, excluded={1.0: CERTAIN_LINK})
        links.append(Link(cond, p, **r.basis(link, w), assumed=r.assumed(link, w)))
    return tuple(links)


def read_findings(r: Reader, conditions: set[str]) -> tuple[Finding, ...]:
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
                leak=r.probability(entry, "leak", where, excluded={0.0: NO_FINDING_LEAK, 1.0: FULL_FINDING_LEAK}),
                links=read_links(r, entry, where, conditions),
                **r.basis(entry, where),
                assumed=r.assumed(entry, where),
                **extra,
            )
        )
    return tuple(findings)


def read_labs(r: Reader, conditions: set[str], risk_factors: set[str]) -> tuple[Lab, ...]:
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
        labs.append(read_measurement(r, entry, name, where, conditions, risk_factors))
    return tuple(labs)


def read_duration(r: Reader, conditions: set[str]) -> Lab:
    """The complaint's duration: a measurement like a lab, recent (abnormal) by noisy-OR of conditions."""
    complaint = r.need(r.raw, "complaint", "complaint")
    r.check_keys(complaint, ("symptom_duration_weeks",), "complaint")
    entry = r.need(complaint, "symptom_duration_weeks", "complaint")
    where = "complaint.symptom_duration_weeks"
    r.check_keys(entry, tuple(k for k in LAB_KEYS if k not in ("name", "parent")), where)
    return read_measurement(r, entry, "symptom_duration_weeks", where, conditions, set())


def read_measurement(
    r: Reader, entry: dict, name: str, where: str, conditions: set[str], risk_factors: set[str]
) -> Lab:
    """A number drawn from its normal or abnormal distribution (abnormal by noisy-OR, or by a risk factor)."""
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
    return Lab(
        name=name,
        scale=scale,
        step=step,
        normal=dists["normal"],
        abnormal=dists["abnormal"],
        **r.basis(entry, where),
        assumed=r.assumed(entry, where),
        leak=0.0 if parent else r.probability(entry, "leak", where, excluded={0.0: NO_LAB_LEAK}),
        links=() if parent else read_links(r, entry, where, conditions),
        parent=parent,
    )


def check_condition_order(r: Reader, conditions: tuple[LogisticNode, ...]) -> None:
    names = [c.name for c in conditions]
    for k, (expected, found) in enumerate(zip_longest(r.schema.conditions, names)):
        if expected != found:
            r.fail(
                "conditions",
                "must list the schema's conditions in schema order; "
                f"conditions[{k}] is {found!r}, expected {expected!r}",
            )
