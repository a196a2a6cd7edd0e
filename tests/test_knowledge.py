"""The knowledge base: the real file obeys its rules, and each kind of mistake is caught by name."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.contract._kb_reader import CLINICAL_ASSUMPTION, SEED
from pipeline.contract.knowledge import KnowledgeBase, KnowledgeBaseError, Passage, Tip
from pipeline.contract.loader import KB_PATH, default_knowledge_base, load_knowledge_base, parse_knowledge_base
from pipeline.contract.schema import default_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = REPO_ROOT / "data" / "seed" / "000_08eac196c40283c7.txt"
KB_TEXT = KB_PATH.read_text(encoding="utf-8")
RAW = yaml.safe_load(KB_TEXT)


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def seed_sections() -> dict[str, str]:
    """The seed text by section label as the KB names them: intro, 1-6, FAQ n, Tip n."""
    headers = [
        (r"^(\d)\. \S", "{}"),
        (r"^Question (\d):", "FAQ {}"),
        (r"^Tip (\d):", "Tip {}"),
        (r"^(Frequently Asked Questions|Strategies for|Concluding Remarks)", "other: {}"),
    ]
    sections: dict[str, list[str]] = {"intro": []}
    current = "intro"
    for line in SEED_PATH.read_text(encoding="utf-8").splitlines():
        for pattern, label in headers:
            match = re.match(pattern, line)
            if match:
                current = label.format(match[1])
                assert current not in sections or current.startswith("other"), f"seed: {current} twice"
                sections.setdefault(current, [])
                break
        sections[current].append(line)
    return {name: collapse(" ".join(lines)) for name, lines in sections.items()}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


def relations(kb: KnowledgeBase) -> Iterator[tuple[str, object]]:
    """Every relation object of the loaded KB with a readable name."""
    for group in ("risk_factors", "conditions"):
        for node in getattr(kb, group):
            yield f"{group} {node.name}", node
            for eff in node.effects:
                yield f"{group} {node.name} effect {eff.factor}", eff
    for finding in kb.findings:
        yield f"finding {finding.name}", finding
        for link in finding.links:
            yield f"finding {finding.name} link {link.condition}", link
    for lab in (*kb.labs, kb.duration):
        yield f"lab {lab.name}", lab
        for link in lab.links:
            yield f"lab {lab.name} link {link.condition}", link
    for flag in kb.red_flags:
        yield f"red flag {flag.name}", flag
    yield "triage default", kb.triage_default
    for tip in kb.tips:
        yield f"tip {tip.number}", tip


# ---------------------------------------------------------------------------------------------
# The real knowledge base


def test_real_kb_loads_and_default_is_the_file(kb):
    assert default_knowledge_base().sha256 == hashlib.sha256(KB_PATH.read_bytes()).hexdigest()
    assert default_knowledge_base() is default_knowledge_base()  # loaded once per process
    assert kb.schema_version == 1
    assert RAW["seed_file"] == SEED_PATH.relative_to(REPO_ROOT).as_posix()


def test_conditions_in_schema_order_with_schema_causes(kb):
    schema = default_schema()
    assert len(kb.conditions) == len(schema.conditions)
    assert kb.condition_names == schema.conditions, (
        f"KB conditions {kb.condition_names}\nschema conditions {schema.conditions}"
    )
    wrong = {c.name: (c.cause, schema.cause_of(c.name)) for c in kb.conditions if c.cause != schema.cause_of(c.name)}
    assert not wrong, f"condition: (KB cause, schema cause) {wrong}"


def test_every_passage_quote_is_verbatim_in_its_seed_section(kb):
    seed = collapse(SEED_PATH.read_text(encoding="utf-8"))
    sections = seed_sections()
    assert {"intro", "1", "6", "FAQ 1", "FAQ 6", "Tip 1", "Tip 7"} <= set(sections), sorted(sections)
    not_in_seed = [pid for pid, p in kb.passages.items() if collapse(p.quote) not in seed]
    assert not not_in_seed, f"passages whose quote is not in {SEED_PATH.name}: {not_in_seed}"
    misplaced = {
        pid: p.section for pid, p in kb.passages.items() if collapse(p.quote) not in sections.get(p.section, "")
    }
    assert not misplaced, f"passages whose quote is not in the section they name: {misplaced}"
    assert all(len(collapse(p.quote)) >= 20 for p in kb.passages.values()), "a quote too short to cite"


def test_every_relation_cites_a_passage_or_is_a_clinical_assumption(kb):
    seen = 0
    for name, rel in relations(kb):
        seen += 1
        if rel.basis == SEED:
            assert isinstance(rel.source, Passage), f"{name}: source {rel.source!r} is not a Passage"
            assert kb.passages.get(rel.source.id) == rel.source, f"{name}: cites unknown {rel.source.id!r}"
            assert rel.source.section and rel.source.quote.strip(), f"{name}: cites an empty passage"
            assert not rel.rationale, f"{name}: a seed relation has a rationale"
        else:
            assert rel.basis == CLINICAL_ASSUMPTION, f"{name}: basis {rel.basis!r}"
            assert rel.source is None and rel.rationale.strip(), f"{name}: clinical assumption without rationale"
    assert seen > 100
    # Sources the loaded objects do not keep: check them in the YAML.
    raw_sources = {
        "complaint.symptom_duration_weeks": RAW["complaint"]["symptom_duration_weeks"],
        "blank_rates": RAW["blank_rates"],
        "specialists": RAW["specialists"],
        "triage_default": RAW["triage_default"],
        **{f"specialists.by_cause {e['cause']}": e for e in RAW["specialists"]["by_cause"]},
    }
    for name, entry in raw_sources.items():
        if "basis" in entry:
            assert entry["basis"] == CLINICAL_ASSUMPTION and entry["rationale"].strip(), name
        else:
            assert entry.get("source") in kb.passages, f"{name}: source {entry.get('source')!r}"


def test_basis_counts_cover_every_relation(kb):
    counts = kb.basis_counts()
    assert set(counts) == {SEED, CLINICAL_ASSUMPTION}
    assert sum(counts.values()) == sum(1 for _ in relations(kb))
    assert counts[SEED] > 100 and counts[CLINICAL_ASSUMPTION] > 50


def test_every_number_has_an_assumption(kb):
    number_bearing = [(name, rel) for name, rel in relations(kb) if not isinstance(rel, Tip)]  # tips carry none
    assert len(number_bearing) > 100
    missing = [name for name, rel in number_bearing if not (isinstance(rel.assumed, str) and rel.assumed.strip())]
    assert not missing, f"relations without an `assumed` rationale: {missing}"
    raw_entries = {
        **{f"populations.{k}": v for k, v in RAW["populations"].items()},
        "complaint.symptom_duration_weeks": RAW["complaint"]["symptom_duration_weeks"],
        "blank_rates": RAW["blank_rates"],
        "specialists": RAW["specialists"],
        "triage_default": RAW["triage_default"],
    }
    for name, entry in raw_entries.items():
        assumed = entry.get("assumed")
        assert isinstance(assumed, str) and assumed.strip(), f"{name}: no `assumed` rationale"


def _prob_thresholds(test: dict) -> Iterator[float]:
    if "all" in test or "any" in test:
        for sub in test.get("all", test.get("any")):
            yield from _prob_thresholds(sub)
    elif "not" in test:
        yield from _prob_thresholds(test["not"])
    elif "prob" in test or "cause" in test:
        yield from (v for k, v in test.items() if k in (">=", ">", "<=", "<"))


def test_all_probabilities_in_unit_interval(kb):
    probs: dict[str, float] = {}
    for group in ("risk_factors", "conditions"):
        for node in getattr(kb, group):
            assert 0 < node.base_rate < 1, f"{node.name}: base_rate {node.base_rate}"
    for finding in kb.findings:
        probs[f"finding {finding.name} leak"] = finding.leak
        probs.update({f"finding {finding.name} link {lk.condition}": lk.p for lk in finding.links})
    for lab in kb.labs:
        probs[f"lab {lab.name} leak"] = lab.leak
        probs.update({f"lab {lab.name} link {lk.condition}": lk.p for lk in lab.links})
    probs.update({f"blank rate {k}": v for k, v in kb.blank_rates.items()})
    for pop in kb.populations.values():
        for fld, levels in pop.categorical.items():
            probs.update({f"population {pop.name} {fld}={lvl}": p for lvl, p in levels.items()})
            assert sum(levels.values()) == pytest.approx(1.0), f"population {pop.name} {fld}"
    for flag in kb.red_flags:
        probs.update({f"red flag {flag.name} #{i}": p for i, p in enumerate(_prob_thresholds(flag.when))})
    probs["specialist threshold"] = kb.specialist_threshold
    probs["not self-care threshold"] = kb.triage_default.not_self_care_at
    outside = {k: v for k, v in probs.items() if not 0 <= v <= 1}
    assert not outside, f"probabilities outside [0, 1]: {outside}"
    assert len(probs) > 150


def test_hash_is_the_file_hash_and_stable(kb):
    data = KB_PATH.read_bytes()
    assert kb.sha256 == hashlib.sha256(data).hexdigest()
    assert load_knowledge_base().sha256 == kb.sha256
    assert parse_knowledge_base(data).sha256 == parse_knowledge_base(data.decode("utf-8")).sha256 == kb.sha256
    assert kb.short_hash == kb.sha256[:12]


def test_hash_changes_with_one_byte(kb):
    data = KB_PATH.read_bytes()
    assert data.startswith(b"# Knowledge base")
    edited = b"# knowledge base" + data[len(b"# Knowledge base") :]  # one byte, in a comment
    assert len(edited) == len(data) and sum(a != b for a, b in zip(edited, data, strict=True)) == 1
    other = parse_knowledge_base(edited)
    assert other.sha256 != kb.sha256
    assert other.condition_names == kb.condition_names and other.passages == kb.passages


# ---------------------------------------------------------------------------------------------
# Each kind of mistake names the offending entry


def index_of(entries: list[dict], name: str, key: str = "name") -> int:
    matches = [i for i, e in enumerate(entries) if e[key] == name]
    assert len(matches) == 1, f"{name!r} found {len(matches)} times"
    return matches[0]


def named(raw: dict, group: str, name: str) -> dict:
    return raw[group][index_of(raw[group], name)]


def dumped(mutate: Callable[[dict], None]) -> str:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def test_round_trip_without_mutation_loads(kb):
    """The mutation tests below fail for their mutation, not for the YAML round trip."""
    again = parse_knowledge_base(dumped(lambda raw: None))
    assert again.condition_names == kb.condition_names
    assert again.findings == kb.findings and again.risk_factors == kb.risk_factors


F_ONSET = index_of(RAW["findings"], "sudden_onset")
F_FATIGUE = index_of(RAW["findings"], "general_fatigue")
C_DECOND = index_of(RAW["conditions"], "deconditioning")
C_PAD = index_of(RAW["conditions"], "peripheral_artery_disease")
R_HTN = index_of(RAW["risk_factors"], "hypertension")
R_DM = index_of(RAW["risk_factors"], "diabetes")
FLAG_K = index_of(RAW["red_flags"], "severe_hypokalaemia")
FLAG_PE = index_of(RAW["red_flags"], "possible_pulmonary_embolism")
FLAG_SEVERE = index_of(RAW["red_flags"], "severe_persistent_fatigue")
C_VASC = index_of(RAW["conditions"], "vasculitis")
L_HB = index_of(RAW["labs"], "hemoglobin_g_dl")
N_DECOND_EFFECTS = len(RAW["conditions"][C_DECOND]["effects"])
N_FATIGUE_LINKS = len(RAW["findings"][F_FATIGUE]["links"])
N_HTN_EFFECTS = len(RAW["risk_factors"][R_HTN]["effects"])
N_BY_CAUSE = len(RAW["specialists"]["by_cause"])
ONSET = f"findings[{F_ONSET}] 'sudden_onset'"
PAD = f"conditions[{C_PAD}] 'peripheral_artery_disease'"
DECOND = f"conditions[{C_DECOND}] 'deconditioning'"
FATIGUE = f"findings[{F_FATIGUE}] 'general_fatigue'"
HYPOKALAEMIA = f"red_flags[{FLAG_K}] 'severe_hypokalaemia'"
DURATION = "complaint.symptom_duration_weeks"


def _set(path: tuple, value) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        target = raw
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _append_copy(path: tuple, index: int) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        target = raw
        for key in path:
            target = target[key]
        target.append(copy.deepcopy(target[index]))

    return mutate


def _rename(path: tuple, old: str, new: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        target = raw
        for key in path:
            target = target[key]
        target[new] = target.pop(old)

    return mutate


def _unsourced(path: tuple, **fields) -> Callable[[dict], None]:
    """Drop the entry's `source` and set the given fields (a basis, a rationale)."""

    def mutate(raw: dict) -> None:
        target = raw
        for key in path:
            target = target[key]
        del target["source"]
        target.update(fields)

    return mutate


def _swap_conditions(i: int, j: int) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        conds = raw["conditions"]
        conds[i], conds[j] = conds[j], conds[i]

    return mutate


def _drop_condition(name: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw["conditions"].pop(index_of(raw["conditions"], name))

    return mutate


def _add_effect(group: str, index: int, factor: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw[group][index]["effects"].append(
            {"factor": factor, "log_odds": 0.3, "source": "micro_dm_htn", "assumed": "test"}
        )

    return mutate


ERRORS = [
    pytest.param(
        _set(("findings", F_ONSET, "links", 0, "condition"), "no_such_condition"),
        f"{ONSET} link[0]: unknown condition 'no_such_condition'",
        id="unknown-condition-in-finding-link",
    ),
    pytest.param(
        _set(("conditions", C_DECOND, "effects", 0, "factor"), "no_such_factor"),
        f"{DECOND} effect[0]: unknown factor 'no_such_factor'",
        id="unknown-factor-in-condition-effects",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "links", 0, "p"), 1.5),
        f"{ONSET} link[0]: `p` = 1.5 is outside [0, 1]",
        id="link-p-above-1",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "leak"), -0.1),
        f"{ONSET}: `leak` = -0.1 is outside [0, 1]",
        id="negative-leak",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "base_rate"), 0),
        f"conditions[{C_PAD}] 'peripheral_artery_disease': `base_rate` = 0 is outside (0, 1)",
        id="base-rate-zero",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "base_rate"), "often"),
        f"conditions[{C_PAD}] 'peripheral_artery_disease': `base_rate` must be a finite number, got 'often'",
        id="base-rate-not-a-number",
    ),
    pytest.param(
        _delete(("findings", F_ONSET, "links", 0, "source")),
        f"{ONSET} link[0]: missing `source`",
        id="missing-source-on-link",
    ),
    pytest.param(
        _delete(("conditions", C_DECOND, "source")),
        f"{DECOND}: missing `source`",
        id="missing-source-on-condition",
    ),
    pytest.param(
        _set(("conditions", C_DECOND, "effects", 2, "source"), "no_such_passage"),
        f"{DECOND} effect[2]: source 'no_such_passage' is not a passage of the seed",
        id="source-not-a-passage",
    ),
    pytest.param(
        _set(("red_flags", FLAG_SEVERE, "source"), "severity"),
        f"red_flags[{FLAG_SEVERE}] 'severe_persistent_fatigue': source 'severity' is not a passage",
        id="red-flag-source-not-a-passage",
    ),
    pytest.param(
        _delete(("risk_factors", R_HTN, "effects", 1, "assumed")),
        f"risk_factors[{R_HTN}] 'hypertension' effect[1]: missing `assumed`",
        id="missing-assumed-on-effect",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "assumed"), "   "),
        f"{ONSET}: `assumed` needs a one-line rationale",
        id="blank-assumed-on-finding",
    ),
    pytest.param(
        _append_copy(("findings", F_FATIGUE, "links"), 2),
        f"findings[{F_FATIGUE}] 'general_fatigue' link[{N_FATIGUE_LINKS}]: duplicate link from 'systemic_lupus'",
        id="duplicate-link",
    ),
    pytest.param(
        _append_copy(("conditions", C_DECOND, "effects"), 0),
        f"{DECOND} effect[{N_DECOND_EFFECTS}]: duplicate effect of 'activity_level=sedentary'",
        id="duplicate-effect",
    ),
    pytest.param(
        _append_copy(("conditions",), C_PAD),
        "conditions[21] 'peripheral_artery_disease': defined twice",
        id="condition-listed-twice",
    ),
    pytest.param(
        _drop_condition("vasculitis"),
        "conditions: must list the schema's conditions in schema order; "
        f"conditions[{C_VASC}] is {RAW['conditions'][C_VASC + 1]['name']!r}, expected 'vasculitis'",
        id="condition-missing",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "name"), "gout"),
        f"conditions[{C_PAD}] 'gout': not one of the schema's conditions",
        id="condition-not-in-schema",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "cause"), "nutrient"),
        f"conditions[{C_PAD}] 'peripheral_artery_disease': cause 'nutrient' differs from the schema's 'circulation'",
        id="condition-wrong-cause",
    ),
    pytest.param(
        _set(("red_flags", FLAG_K, "when", "field"), "potassium"),
        f"red_flags[{FLAG_K}] 'severe_hypokalaemia'.when: unknown field 'potassium'",
        id="red-flag-unknown-field",
    ),
    pytest.param(
        _set(("red_flags", FLAG_PE, "when", "all", 1, "any", 0, "field"), "chest_pains"),
        f"red_flags[{FLAG_PE}] 'possible_pulmonary_embolism'.when.all[1].any[0]: unknown field 'chest_pains'",
        id="red-flag-unknown-nested-field",
    ),
    pytest.param(
        _set(("red_flags", FLAG_PE, "when", "all", 1, "any", 5, "prob"), "pulmonary_embolism"),
        f"red_flags[{FLAG_PE}] 'possible_pulmonary_embolism'.when.all[1].any[5]: "
        "unknown condition 'pulmonary_embolism'",
        id="red-flag-unknown-condition",
    ),
    pytest.param(
        _set(("red_flags", FLAG_K, "triage"), "critical"),
        f"red_flags[{FLAG_K}] 'severe_hypokalaemia': triage 'critical' is not one of "
        "['emergency', 'urgent', 'routine', 'self_care']",
        id="red-flag-unknown-triage",
    ),
    pytest.param(
        _set(("schema_version",), 2),
        "schema_version: 2 is not supported ((1,))",
        id="schema-version-2",
    ),
    pytest.param(
        _delete(("schema_version",)),
        "schema_version: None is not supported ((1,))",
        id="schema-version-missing",
    ),
    pytest.param(
        _set(("populations", "general", "sex", "female"), 0.5),
        re.compile(r"populations\.general\.sex: probabilities sum to 0\.94\d*, not 1"),
        id="population-not-summing-to-1",
    ),
    pytest.param(
        _add_effect("risk_factors", R_HTN, "diabetes"),
        f"risk_factors[{R_HTN}] 'hypertension' effect[{N_HTN_EFFECTS}]: unknown factor 'diabetes' "
        "(or not defined before 'hypertension')",
        id="risk-factor-effect-defined-later",
    ),
    pytest.param(
        _add_effect("risk_factors", R_HTN, "hypertension"),
        f"risk_factors[{R_HTN}] 'hypertension' effect[{N_HTN_EFFECTS}]: unknown factor 'hypertension' "
        "(or not defined before 'hypertension')",
        id="risk-factor-effect-on-itself",
    ),
    pytest.param(
        _add_effect("conditions", C_DECOND, "deep_vein_thrombosis"),
        f"{DECOND} effect[{N_DECOND_EFFECTS}]: unknown factor 'deep_vein_thrombosis'",
        id="condition-effect-of-condition",
    ),
    pytest.param(
        _rename(("conditions", C_DECOND), "effects", "efects"),
        f"{DECOND}: unknown key(s) ['efects'] (allowed: name, base_rate, effects, stated_rates, source, basis, "
        "rationale, assumed, cause)",
        id="unknown-key-in-condition",
    ),
    pytest.param(
        _rename(("findings", F_FATIGUE), "links", "link"),
        f"{FATIGUE}: unknown key(s) ['link'] (allowed: name, field, leak, links, source, basis, rationale, assumed)",
        id="unknown-key-in-finding",
    ),
    pytest.param(
        _rename(("populations", "general"), "smoking", "smoker"),
        "populations.general: unknown key(s) ['smoker'] (allowed: age, sex, ",
        id="unknown-key-in-population",
    ),
    pytest.param(
        _rename((), "seed_file", "seed"),
        "top level: unknown key(s) ['seed'] (allowed: schema_version, seed_file, ",
        id="unknown-key-at-top-level",
    ),
    pytest.param(
        _set(("red_flags", FLAG_K, "when", "<"), "low"),
        f"{HYPOKALAEMIA}.when: `<` must be a finite number, got 'low'",
        id="red-flag-threshold-not-a-number",
    ),
    pytest.param(
        _set(("red_flags", FLAG_K, "when"), {"not": {"field": "ck_u_l", ">": 1}, "field": "abi"}),
        f"{HYPOKALAEMIA}.when: `not` takes one test and nothing else",
        id="red-flag-not-with-extra-keys",
    ),
    pytest.param(
        _append_copy(("specialists", "by_cause"), 0),
        f"specialists.by_cause[{N_BY_CAUSE}]: cause 'deconditioning' given twice",
        id="specialist-cause-twice",
    ),
    pytest.param(
        _delete(("complaint", "symptom_duration_weeks", "abnormal")),
        f"{DURATION}: missing `abnormal`",
        id="duration-missing-key",
    ),
    pytest.param(
        _set(("complaint", "symptom_duration_weeks", "step"), 0),
        f"{DURATION}: step must be positive",
        id="duration-step-not-positive",
    ),
    pytest.param(
        _set(("complaint", "symptom_duration_weeks", "parent"), "diabetes"),
        f"{DURATION}: unknown key(s) ['parent']",
        id="duration-has-no-parent",
    ),
    pytest.param(
        _delete(("triage_default", "self_care_when")),
        "triage_default: missing `self_care_when`",
        id="triage-default-without-self-care-rule",
    ),
    pytest.param(
        _set(("triage_default", "level"), "self_care"),
        "triage_default: level 'self_care' must be a triage level above self_care",
        id="triage-default-level-self-care",
    ),
    pytest.param(
        _swap_conditions(C_DECOND, C_PAD),
        "conditions: must list the schema's conditions in schema order; "
        f"conditions[{C_DECOND}] is 'peripheral_artery_disease', expected 'deconditioning'",
        id="conditions-out-of-order",
    ),
    pytest.param(
        _set(("populations", "general", "age", "min"), 10),
        "populations.general.age: min and max must lie within the schema's [18, 110]",
        id="population-age-below-schema-min",
    ),
    pytest.param(
        _set(("tips", 1, "number"), 1),
        "tips[1]: tip number 1 given twice",
        id="tip-number-twice",
    ),
    # The basis of a relation: `source:` or `basis: clinical_assumption` with a `rationale:`.
    pytest.param(
        _set(("findings", F_ONSET, "basis"), "clinical_assumption"),
        f"{ONSET}: has both `source` and `basis`",
        id="both-source-and-basis",
    ),
    pytest.param(
        _unsourced(("findings", F_ONSET, "links", 0), rationale="acute DVT starts abruptly"),
        f"{ONSET} link[0]: missing `source` (or `basis: clinical_assumption` with a `rationale`)",
        id="neither-source-nor-basis",
    ),
    pytest.param(
        _unsourced(("findings", F_ONSET, "links", 0), basis="seed", rationale="acute DVT starts abruptly"),
        f"{ONSET} link[0]: unknown basis 'seed': the only one is 'clinical_assumption'",
        id="unknown-basis",
    ),
    pytest.param(
        _unsourced(("findings", F_ONSET, "links", 0), basis="clinical_assumption", rationale="  "),
        f"{ONSET} link[0]: `basis: clinical_assumption` needs a one-line `rationale`",
        id="empty-rationale",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "links", 0, "rationale"), "because"),
        f"{ONSET} link[0]: `rationale` goes with `basis: clinical_assumption`, not with `source`",
        id="rationale-with-source",
    ),
    # Probabilities the engine cannot represent.
    pytest.param(
        _set(("findings", F_ONSET, "links", 0, "p"), 1),
        f"{ONSET} link[0]: `p` = 1 cannot be represented: the engine takes log(1 - p)",
        id="link-p-of-1",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "leak"), 0),
        f"{ONSET}: `leak` = 0 cannot be represented: a 'yes' with none of the linked conditions",
        id="finding-leak-0",
    ),
    pytest.param(
        _set(("findings", F_ONSET, "leak"), 1.0),
        f"{ONSET}: `leak` = 1.0 cannot be represented: the finding would always be present",
        id="finding-leak-1",
    ),
    pytest.param(
        _set(("labs", L_HB, "leak"), 0.0),
        f"labs[{L_HB}] 'hemoglobin_g_dl': `leak` = 0.0 cannot be represented: the oracle would divide",
        id="lab-leak-0",
    ),
    pytest.param(
        _set(("populations", "general", "sex"), {"female": 0.57, "male": 0.43, "other": 0}),
        "populations.general.sex: `other` = 0 cannot be represented: a record with this value",
        id="population-probability-0",
    ),
    # Stated rates.
    pytest.param(
        _set(("conditions", C_PAD, "stated_rates"), [{"given": {"diabetes": True}, "rate": [0.1, 0.2]}]),
        f"""{PAD} stated_rates[0]: `given` diabetes: True is not one of ['yes', 'no'] (quote "yes" and "no")""",
        id="stated-rate-unquoted-yes",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "stated_rates"), [{"given": {"bmi": "obese"}, "rate": [0.1, 0.2]}]),
        f"{PAD} stated_rates[0]: `given` field 'bmi' is not a yes/no or category person field or risk factor",
        id="stated-rate-numeric-field",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "stated_rates"), [{"given": {"age_at_least": 80, "age_below": 60}, "rate": [0, 1]}]),
        f"{PAD} stated_rates[0]: `age_at_least` must be below `age_below`",
        id="stated-rate-empty-age-range",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "stated_rates"), [{"given": {}, "rate": [0.3, 0.2]}]),
        f"{PAD} stated_rates[0]: `rate` [0.3, 0.2] must have low < high",
        id="stated-rate-reversed",
    ),
    pytest.param(
        _set(("conditions", C_PAD, "stated_rates"), [{"given": {}, "rate": [0.1, 0.2], "population": "clinic"}]),
        f"{PAD} stated_rates[0]: unknown population 'clinic'",
        id="stated-rate-unknown-population",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), ERRORS)
def test_mistake_is_reported_by_name(mutate, message):
    text = dumped(mutate)
    pattern = message if isinstance(message, re.Pattern) else re.escape(f"knowledge base: {message}")
    with pytest.raises(KnowledgeBaseError, match=pattern):
        parse_knowledge_base(text)


def test_a_relation_can_move_from_the_seed_to_clinical_assumption(kb):
    assume = _unsourced(
        ("findings", F_ONSET, "links", 0), basis="clinical_assumption", rationale="acute DVT starts abruptly (ESC 2019)"
    )
    other = parse_knowledge_base(dumped(assume))
    link = other.findings[F_ONSET].links[0]
    assert (link.source, link.basis, link.rationale) == (
        None,
        CLINICAL_ASSUMPTION,
        "acute DVT starts abruptly (ESC 2019)",
    )
    before, after = kb.basis_counts(), other.basis_counts()
    assert after[SEED] == before[SEED] - 1 and after[CLINICAL_ASSUMPTION] == before[CLINICAL_ASSUMPTION] + 1


def test_stated_rates_are_read(kb):
    pad = next(c for c in kb.conditions if c.name == "peripheral_artery_disease")
    over_80 = [r for r in pad.stated_rates if r.age_at_least == 80]
    assert len(over_80) == 1 and over_80[0].given == () and over_80[0].population == "general"
    assert 0 < over_80[0].low < over_80[0].high < 1
    neuropathy = next(c for c in kb.conditions if c.name == "peripheral_neuropathy")
    assert (("diabetes", "yes"),) in [r.given for r in neuropathy.stated_rates]


def test_risk_factor_order_matters():
    """The same effect that fails before `diabetes` is defined loads once `diabetes` comes first."""

    def move_diabetes_first(raw: dict) -> None:
        raw["risk_factors"].insert(0, raw["risk_factors"].pop(R_DM))
        _add_effect("risk_factors", index_of(raw["risk_factors"], "hypertension"), "diabetes")(raw)

    kb = parse_knowledge_base(dumped(move_diabetes_first))
    htn = next(n for n in kb.risk_factors if n.name == "hypertension")
    assert [e.factor for e in htn.effects][-1] == "diabetes"
    assert [n.name for n in kb.risk_factors][:2] == ["diabetes", "hypertension"]


def test_a_file_that_is_not_a_mapping_is_refused():
    with pytest.raises(KnowledgeBaseError, match="not a YAML mapping"):
        parse_knowledge_base("- just\n- a list\n")
