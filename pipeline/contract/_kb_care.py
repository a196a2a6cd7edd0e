"""Red flags, the triage default, specialists and tips: what the scorer tells a clinic."""

from __future__ import annotations

from pipeline.contract import rules
from pipeline.contract._kb_reader import (
    BY_CAUSE_KEYS,
    RED_FLAG_KEYS,
    SPECIALIST_KEYS,
    TIP_KEYS,
    TRIAGE_DEFAULT_KEYS,
    Reader,
)  # fmt: skip
from pipeline.contract.knowledge import (  # fmt: skip
    RedFlag,
    Tip,
    TriageDefault,
)


def checked_rule(r: Reader, entry: dict, key: str, where: str) -> dict:
    """The rule under `key`, checked against the grammar; a mistake is reported where it is."""
    rule = r.need(entry, key, where)
    try:
        rules.check_rule(rule, r.schema, f"{where}.{key}")
    except rules.RuleError as err:
        r.fail(err.where, err.message)
    return rule


def read_red_flags(r: Reader) -> tuple[RedFlag, ...]:
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
        when = checked_rule(r, entry, "when", where)
        flags.append(RedFlag(name, triage, when, **r.basis(entry, where), assumed=r.assumed(entry, where)))
    return tuple(flags)


def read_specialists(r: Reader) -> tuple[dict, dict[str, str]]:
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
        r.basis(entry, w)
        by_cause[cause] = who
    if set(by_cause) != set(r.schema.cause_names):
        r.fail("specialists.by_cause", "every cause needs a specialist")
    first = r.need(spec, "first", "specialists")
    if first not in r.schema.specialists:
        r.fail("specialists", f"unknown specialist {first!r}")
    r.basis(spec, "specialists")
    r.assumed(spec, "specialists")
    return spec, by_cause


def read_triage_default(r: Reader) -> TriageDefault:
    where = "triage_default"
    entry = r.need(r.raw, "triage_default", where)
    r.check_keys(entry, TRIAGE_DEFAULT_KEYS, where)
    level = r.need(entry, "level", where)
    if level not in r.schema.triage_levels or level == "self_care":
        r.fail(where, f"level {level!r} must be a triage level above self_care")
    rule = checked_rule(r, entry, "self_care_when", where)
    return TriageDefault(
        level=level,
        self_care_when=rule,
        not_self_care_at=r.probability(entry, "not_self_care_if_any_condition_at_least", where),
        **r.basis(entry, where),
        assumed=r.assumed(entry, where),
    )


def read_tips(r: Reader) -> tuple[Tip, ...]:
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
        tips.append(Tip(number, r.need(entry, "title", w), causes, **r.basis(entry, w)))
    return tuple(tips)
