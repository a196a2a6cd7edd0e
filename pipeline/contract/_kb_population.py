"""Passages, bands, population presets and blank rates."""

from __future__ import annotations

from pipeline.contract._kb_reader import (
    BAND_KEYS,
    BLANK_RATE_KEYS,
    NO_PERSON_VALUE,
    NUMERIC_KEYS,
    PASSAGE_KEYS,
    POPULATION_KEYS,
    Reader,
)  # fmt: skip
from pipeline.contract.knowledge import (  # fmt: skip
    Band,
    NumericDistribution,
    Passage,
    Population,
)


def read_passages(r: Reader) -> None:
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


def read_bands(r: Reader) -> dict[str, Band]:
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


def read_numeric(r: Reader, entry: dict, where: str) -> NumericDistribution:
    r.check_keys(entry, NUMERIC_KEYS, where)
    values = {k: r.number(entry, k, where) for k in NUMERIC_KEYS}
    if values["sd"] <= 0 or values["step"] <= 0 or values["min"] >= values["max"]:
        r.fail(where, "needs sd > 0, step > 0 and min < max")
    return NumericDistribution(**values)


def read_populations(r: Reader, bands: dict[str, Band]) -> dict[str, Population]:
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
                numeric[col.name] = dist = read_numeric(r, spec, w)
                if not col.min <= dist.min < dist.max <= col.max:
                    r.fail(w, f"min and max must lie within the schema's [{col.min:g}, {col.max:g}]")
                if col.name != "age" and col.name not in bands:
                    r.fail(w, "a numeric person field must have a band")
                continue
            levels = col.categories if col.kind == "category" else ("yes", "no")
            if set(spec) != set(levels):
                r.fail(w, f"probabilities must be given for exactly {list(levels)}")
            probs = {lvl: r.probability(spec, lvl, w, excluded={0.0: NO_PERSON_VALUE}) for lvl in levels}
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


def read_blank_rates(r: Reader) -> dict[str, float]:
    entry = r.need(r.raw, "blank_rates", "blank_rates")
    r.check_keys(entry, BLANK_RATE_KEYS, "blank_rates")
    r.basis(entry, "blank_rates")
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
