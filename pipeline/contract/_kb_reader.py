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
SEED, CLINICAL_ASSUMPTION = "seed", "clinical_assumption"
BASIS_KEYS = ("source", "basis", "rationale")  # `source:`, or `basis: clinical_assumption` + `rationale:`
RATIONALE = (*BASIS_KEYS, "assumed")
PASSAGE_KEYS = ("section", "quote")
BAND_KEYS = ("cuts", "labels")
POPULATION_KEYS = ("description", "assumed", "risk_factor_log_odds_shift")  # + the person fields
NUMERIC_KEYS = ("mean", "sd", "min", "max", "step")
DURATION_KEYS = ("median", "sd_log", "min", "max", "step")
NODE_KEYS = ("name", "base_rate", "effects", "stated_rates", *RATIONALE)
STATED_RATE_KEYS = ("given", "rate", "population")
AGE_GIVEN = ("age_at_least", "age_below")
EFFECT_KEYS = ("factor", "log_odds", *RATIONALE)
LINK_KEYS = ("condition", "p", *RATIONALE)
FINDING_KEYS = ("name", "field", "leak", "links", *RATIONALE)
FINDING_KIND_KEYS = {"category": ("present", "absent"), "integer": ("present_range", "absent_range")}
LAB_KEYS = ("name", "scale", "step", "normal", "abnormal", "leak", "links", "parent", *RATIONALE)
DISTRIBUTION_KEYS = ("mean", "sd")
BLANK_RATE_KEYS = ("by_group", "by_field", *RATIONALE)
SPECIALIST_KEYS = ("first", "threshold", "by_cause", *RATIONALE)
BY_CAUSE_KEYS = ("cause", "specialist", *BASIS_KEYS)
RED_FLAG_KEYS = ("name", "triage", "when", *RATIONALE)
TRIAGE_DEFAULT_KEYS = ("level", "self_care_when", "not_self_care_if_any_condition_at_least", *RATIONALE)
TIP_KEYS = ("number", "title", "causes", *BASIS_KEYS)
# Probabilities the engine cannot represent (pipeline/world/network.py, generate.py, oracle.py).
CERTAIN_LINK = "the engine takes log(1 - p), which is -inf (NaN in the generator's noisy-OR); use a value below 1"
NO_FINDING_LEAK = (
    "a 'yes' with none of the linked conditions present would have probability 0 "
    "(the oracle divides by it); use a small positive leak"
)
FULL_FINDING_LEAK = "the finding would always be present, so a 'no' has probability 0 and no posterior; use less than 1"
NO_LAB_LEAK = (
    "the oracle would divide by the normal distribution's probability of an observed value, "
    "which is 0 in its far tail; use a small positive leak"
)
NO_PERSON_VALUE = "a record with this value would have probability 0 (the oracle's posterior is NaN); give it some mass"


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

    def probability(
        self, entry: dict, key: str, where: str, *, open_interval: bool = False, excluded: dict | None = None
    ) -> float:
        """A number in [0, 1] (or (0, 1)); `excluded` maps the values the engine cannot represent to why."""
        value = self.number(entry, key, where)
        lo_ok = value > 0 if open_interval else value >= 0
        hi_ok = value < 1 if open_interval else value <= 1
        if not (lo_ok and hi_ok):
            interval = "(0, 1)" if open_interval else "[0, 1]"
            self.fail(where, f"`{key}` = {entry[key]} is outside {interval}")
        if excluded and value in excluded:
            self.fail(where, f"`{key}` = {entry[key]} cannot be represented: {excluded[value]}")
        return float(value)

    def source(self, entry: dict, where: str) -> Passage:
        ref = self.need(entry, "source", where)
        if ref not in self.passages:
            self.fail(where, f"source {ref!r} is not a passage of the seed")
        return self.passages[ref]

    def basis(self, entry: dict, where: str) -> dict[str, Any]:
        """`source: PASSAGE` when the seed states the relation, else `basis: clinical_assumption`
        with a one-line `rationale`: the source, basis and rationale fields of a relation."""
        if "basis" not in entry:
            if "source" not in entry:
                self.fail(where, "missing `source` (or `basis: clinical_assumption` with a `rationale`)")
            if "rationale" in entry:
                self.fail(where, "`rationale` goes with `basis: clinical_assumption`, not with `source`")
            return {"source": self.source(entry, where), "basis": SEED, "rationale": ""}
        if "source" in entry:
            self.fail(where, "has both `source` and `basis`: a relation is stated by the seed or assumed, not both")
        if entry["basis"] != CLINICAL_ASSUMPTION:
            self.fail(
                where,
                f"unknown basis {entry['basis']!r}: the only one is {CLINICAL_ASSUMPTION!r} "
                "(a relation the seed states names its `source`)",
            )
        text = entry.get("rationale")
        if not isinstance(text, str) or not text.strip():
            self.fail(where, "`basis: clinical_assumption` needs a one-line `rationale`")
        return {"source": None, "basis": CLINICAL_ASSUMPTION, "rationale": text.strip()}

    def assumed(self, entry: dict, where: str) -> str:
        text = self.need(entry, "assumed", where)
        if not isinstance(text, str) or not text.strip():
            self.fail(where, "`assumed` needs a one-line rationale")
        return text
