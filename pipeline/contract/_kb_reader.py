"""Walking the raw knowledge-base YAML: the keys each mapping may have, and typed reads that
fail with a message naming the entry."""

from __future__ import annotations

import math
from typing import Any

from pipeline.contract.knowledge import KnowledgeBaseError, Passage
from pipeline.contract.schema import Schema

# The keys each kind of mapping may have; anything else is a typo and an error.
TOP_KEYS = (
    "schema_version", "seed_file", "passages", "bands", "populations", "complaint", "risk_factors",
    "conditions", "findings", "labs", "blank_rates", "specialists", "red_flags", "triage_default",
    "tips",
)  # fmt: skip
RATIONALE = ("source", "basis", "rationale", "assumed")
BASES = ("seed", "clinical_assumption")  # `source:` a seed passage, or `basis: clinical_assumption` + rationale
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
TRIAGE_DEFAULT_KEYS = ("level", "self_care_when", "not_self_care_if_any_condition_at_least", *RATIONALE)
TIP_KEYS = ("number", "title", "causes", "source")


class Reader:
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

    def source(self, entry: dict, where: str) -> Passage | None:
        """The seed passage the entry rests on; None for a clinical assumption (see `grounds`)."""
        if self.grounds(entry, where)[0] == "clinical_assumption":
            return None
        ref = self.need(entry, "source", where)
        if ref not in self.passages:
            self.fail(where, f"source {ref!r} is not a passage of the seed")
        return self.passages[ref]

    def grounds(self, entry: dict, where: str) -> tuple[str, str]:
        """(basis, rationale): `seed` when a `source:` passage states the relation, or
        `clinical_assumption` with a one-line rationale when the seed does not state it."""
        basis = entry.get("basis", "seed") if isinstance(entry, dict) else "seed"
        if basis not in BASES:
            self.fail(where, f"basis {basis!r} is not one of {BASES}")
        if basis == "seed":
            if "rationale" in entry:
                self.fail(where, "`rationale` goes with `basis: clinical_assumption`; a seed relation cites `source`")
            return "seed", ""
        if "source" in entry:
            self.fail(where, "a clinical assumption cites no seed `source` (the seed does not state it)")
        rationale = entry.get("rationale")
        if not isinstance(rationale, str) or not rationale.strip():
            self.fail(where, "`basis: clinical_assumption` needs a one-line `rationale`")
        return "clinical_assumption", rationale

    def assumed(self, entry: dict, where: str) -> str:
        text = self.need(entry, "assumed", where)
        if not isinstance(text, str) or not text.strip():
            self.fail(where, "`assumed` needs a one-line rationale")
        return text
