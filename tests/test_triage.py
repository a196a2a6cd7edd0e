"""Triage from the knowledge base's rules, applied to typed rows and given probabilities: which
red flags fire, the triage level, top conditions and specialists. No model is needed."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import KB, SCHEMA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.intake.stream import validate_frame
from pipeline.scoring.triage import triage_columns


def typed_rows(*rows: dict[str, str]) -> pd.DataFrame:
    """Typed rows through the real validator, from a few cells each (the rest blank)."""
    full = [{"record_id": f"t{i}", "age": "60", **r} for i, r in enumerate(rows)]
    columns = ["record_id", "age", *sorted({k for r in full for k in r} - {"record_id", "age"})]
    raw = pd.DataFrame([[r.get(c, "") for c in columns] for r in full], columns=columns, dtype=str)
    result = validate_frame(raw, SCHEMA)
    assert result.rejects.empty, result.rejects
    return result.typed


def probs_frame(*rows: dict[str, float], base: float = 0.01) -> pd.DataFrame:
    frame = pd.DataFrame(base, index=range(len(rows)), columns=list(SCHEMA.probability_columns))
    for i, r in enumerate(rows):
        for name, value in r.items():
            frame.loc[i, name] = value
    return frame


def triage_one(fields: dict[str, str], probs: dict[str, float]) -> dict[str, str]:
    out = triage_columns(KB, typed_rows(fields).reset_index(drop=True), probs_frame(probs))
    return {k: v[0].as_py() for k, v in out.items()}


DVT = {"p_deep_vein_thrombosis": 0.5, "p_cause_circulation": 0.5}
NONE: dict[str, float] = {}
LEVEL = {name: rank for rank, name in enumerate(SCHEMA.triage_levels)}  # 0 = most pressing
BENIGN = {"soreness_only_after_exercise": "yes", "symptom_duration_weeks": "1", "severity": "3"}


@pytest.mark.parametrize(
    ("fields", "probs", "triage", "flags"),
    [
        # pulmonary embolism: from the form alone, whatever the probability
        ({"chest_pain": "yes", "recent_immobilization": "yes"}, NONE, "emergency", ["possible_pulmonary_embolism"]),
        ({"shortness_of_breath": "yes", "prior_dvt": "yes"}, NONE, "emergency", ["possible_pulmonary_embolism"]),
        ({"shortness_of_breath": "yes", "d_dimer_ng_ml": "900"}, NONE, "emergency", ["possible_pulmonary_embolism"]),
        ({"shortness_of_breath": "yes"}, DVT, "emergency", ["possible_pulmonary_embolism"]),
        (
            {"chest_pain": "yes", "shortness_of_breath": "yes"},
            NONE,
            "emergency",
            ["chest_pain_with_breathlessness"],
        ),
        (
            {"laterality": "one_leg", "leg_swelling": "yes", "calf_pain_tenderness_warmth": "yes", "chest_pain": "yes"},
            NONE,
            "emergency",
            ["possible_pulmonary_embolism", "likely_acute_dvt"],
        ),
        # acute DVT: the signs, with laterality blank or one leg
        ({"leg_swelling": "yes", "calf_pain_tenderness_warmth": "yes"}, NONE, "urgent", ["likely_acute_dvt"]),
        ({"leg_swelling": "yes", "onset": "sudden"}, NONE, "urgent", ["likely_acute_dvt"]),
        ({"calf_pain_tenderness_warmth": "yes", "recent_immobilization": "yes"}, NONE, "urgent", ["likely_acute_dvt"]),
        ({"laterality": "one_leg", "leg_swelling": "yes"}, DVT, "urgent", ["likely_acute_dvt"]),
        # critical limb ischaemia
        ({"pain_at_rest": "yes", "abi": "0.6"}, NONE, "urgent", ["critical_limb_ischaemia"]),
        (
            {"pain_at_rest": "yes", "pain_on_walking_relieved_by_rest": "yes"},
            NONE,
            "urgent",
            ["critical_limb_ischaemia"],
        ),
        ({"abi": "0.35"}, NONE, "urgent", ["critical_limb_ischaemia"]),
        (
            {"pain_at_rest": "yes"},
            {"p_peripheral_artery_disease": 0.35, "p_cause_circulation": 0.35},
            "urgent",
            ["critical_limb_ischaemia"],
        ),
        # a new neurological deficit, whatever the stroke history (blank, no, or a previous stroke)
        ({"onset": "sudden", "muscle_weakness": "yes"}, NONE, "emergency", ["new_neurological_deficit"]),
        (
            {"onset": "sudden", "muscle_weakness": "yes", "laterality": "one_leg", "prior_stroke": "yes"},
            NONE,
            "emergency",
            ["new_neurological_deficit"],
        ),
        # labs
        ({"potassium_mmol_l": "2.8"}, NONE, "urgent", ["severe_hypokalaemia"]),
        ({"potassium_mmol_l": "6.3"}, NONE, "urgent", ["severe_hyperkalaemia"]),
        ({"magnesium_mg_dl": "1.0"}, NONE, "urgent", ["severe_hypomagnesaemia"]),
        ({"ck_u_l": "6000"}, NONE, "urgent", ["very_high_ck"]),
        ({"hemoglobin_g_dl": "7.5"}, NONE, "urgent", ["severe_anaemia"]),
        ({"unintended_weight_loss": "yes"}, NONE, "routine", ["unintended_weight_loss"]),
        ({"severity": "7"}, NONE, "routine", ["severe_persistent_fatigue"]),
        # near misses: each rule's condition just fails
        ({"laterality": "both_legs", "leg_swelling": "yes", "calf_pain_tenderness_warmth": "yes"}, NONE, "routine", []),
        ({"leg_swelling": "yes"}, NONE, "routine", []),
        ({"shortness_of_breath": "yes"}, NONE, "routine", []),
        ({"pain_at_rest": "yes", "abi": "0.95"}, NONE, "routine", []),
        ({"potassium_mmol_l": "3.0"}, NONE, "routine", []),
        ({"onset": "sudden", "muscle_weakness": "yes", "laterality": "both_legs"}, NONE, "routine", []),
        ({"severity": "6"}, NONE, "routine", []),
    ],
)
def test_triage_rules_fire_where_written(fields, probs, triage, flags):
    out = triage_one(fields, probs)
    assert out["triage"] == triage
    assert out["red_flags"] == ";".join(flags)


def test_a_form_with_only_the_required_fields_is_routine():
    out = triage_one({}, NONE)
    assert out == {"top_conditions": "", "triage": "routine", "red_flags": "", "specialists": "primary_care"}


def test_self_care_only_for_short_mild_soreness_after_exercise():
    assert triage_one(BENIGN, NONE)["triage"] == "self_care"
    for field, value in [
        ("symptom_duration_weeks", "3"),  # persistent: evaluate (FAQ 1, conclusion)
        ("severity", "6"),
        ("soreness_only_after_exercise", "no"),
        ("numbness_tingling", "yes"),  # a concerning symptom
        ("leg_swelling", "yes"),
        ("muscle_weakness", "yes"),
    ]:
        assert triage_one({**BENIGN, field: value}, NONE)["triage"] == "routine", field
    for field in BENIGN:  # self-care needs the benign answers: a blank is doubt, so routine
        form = {k: v for k, v in BENIGN.items() if k != field}
        assert triage_one(form, NONE)["triage"] == "routine", field
    likely = {"p_vitamin_d_deficiency": 0.4, "p_cause_nutrient": 0.4}
    assert triage_one(BENIGN, likely)["triage"] == "routine"


def test_every_red_flag_fires_with_each_guard_field_blank():
    """Each flag's example with its narrowing fields (laterality, stroke history) left blank."""
    for fields in [
        {"leg_swelling": "yes", "calf_pain_tenderness_warmth": "yes"},
        {"onset": "sudden", "muscle_weakness": "yes"},
        {"chest_pain": "yes", "calf_pain_tenderness_warmth": "yes"},
    ]:
        assert LEVEL[triage_one(fields, NONE)["triage"]] <= LEVEL["urgent"], fields


def test_emergency_signs_do_not_depend_on_the_model():
    form = {"chest_pain": "yes", "recent_immobilization": "yes"}
    zero = {c: 0.0 for c in SCHEMA.probability_columns}
    assert triage_one(form, zero)["triage"] == "emergency"


@pytest.mark.parametrize(
    ("probs", "specialists"),
    [
        ({}, "primary_care"),
        ({"p_cause_circulation": 0.6}, "primary_care;vascular_surgeon"),
        ({"p_cause_inflammatory": 0.6}, "primary_care;rheumatologist"),
        ({"p_cause_circulation": 0.6, "p_cause_inflammatory": 0.7}, "primary_care;rheumatologist;vascular_surgeon"),
        ({"p_cause_neurological": 0.3, "p_cause_nutrient": 0.9}, "primary_care;dietitian;neurologist"),
        ({"p_cause_deconditioning": 0.4}, "primary_care;physiatrist"),
        ({"p_cause_medication": 0.9}, "primary_care"),  # medication's specialist is primary care, listed once
        ({"p_cause_medication": 0.9, "p_cause_circulation": 0.5}, "primary_care;vascular_surgeon"),
        ({"p_cause_circulation": 0.2}, "primary_care"),  # below the KB threshold (0.25)
    ],
)
def test_specialists_follow_causes_above_the_threshold(probs, specialists):
    assert KB.specialist_threshold == 0.25
    assert triage_one({}, probs)["specialists"] == specialists


@pytest.mark.parametrize(
    ("probs", "top"),
    [
        (
            {"p_vasculitis": 0.9, "p_deconditioning": 0.7, "p_statin_myopathy": 0.3, "p_systemic_lupus": 0.2},
            "vasculitis;deconditioning;statin_myopathy",
        ),
        (
            {"p_systemic_lupus": 0.2, "p_deconditioning": 0.6, "p_vasculitis": 0.4, "p_parkinsons_disease": 0.35},
            "deconditioning;vasculitis;parkinsons_disease",
        ),
        ({"p_vasculitis": 0.9, "p_deconditioning": 0.04}, "vasculitis"),
        ({"p_vasculitis": 0.06, "p_deconditioning": 0.05, "p_statin_myopathy": 0.049}, "vasculitis;deconditioning"),
        ({}, ""),
    ],
)
def test_top_conditions_at_most_three_most_probable_first(probs, top):
    assert triage_one({}, probs)["top_conditions"] == top


def test_triage_is_vectorised_row_by_row():
    """Many rows in one call give the same answers as one row at a time."""
    cases = [
        ({"laterality": "one_leg", "leg_swelling": "yes"}, DVT),
        ({}, {}),
        ({"potassium_mmol_l": "2.8"}, {"p_cause_inflammatory": 0.6}),
        ({}, {"p_vitamin_d_deficiency": 0.5, "p_cause_nutrient": 0.5}),
    ]
    typed = typed_rows(*(f for f, _ in cases)).reset_index(drop=True)
    together = triage_columns(KB, typed, probs_frame(*(p for _, p in cases)))
    for i, (fields, probs) in enumerate(cases):
        alone = triage_one(fields, probs)
        assert {k: v[i].as_py() for k, v in together.items()} == alone


def test_probabilities_are_read_by_name_whatever_else_the_frame_holds():
    """A probabilities frame in another column order, with an extra text column, gives the same
    triage as the scorer's own frame (exactly the probability columns, in order)."""
    cases = [({"laterality": "one_leg", "leg_swelling": "yes"}, DVT), ({}, {"p_cause_inflammatory": 0.6})]
    typed = typed_rows(*(f for f, _ in cases)).reset_index(drop=True)
    probs = probs_frame(*(p for _, p in cases))
    shuffled = probs[list(reversed(probs.columns))].assign(record_id=["a", "b"])
    want = {k: v.to_pylist() for k, v in triage_columns(KB, typed, probs).items()}
    assert {k: v.to_pylist() for k, v in triage_columns(KB, typed, shuffled).items()} == want
    assert want["triage"] != ["routine", "routine"]  # a red flag fired: the columns were read


# ------------------------------------------------------------------ properties: blanks and probabilities


def _rule_tests(rule: dict):
    for key in ("all", "any"):
        for sub in rule.get(key, []):
            yield from _rule_tests(sub)
    if "not" in rule:
        yield from _rule_tests(rule["not"])
    if "field" in rule or "prob" in rule:
        yield rule


RULES = [flag.when for flag in KB.red_flags] + [KB.triage_default.self_care_when]
RULE_FIELDS = sorted({t["field"] for r in RULES for t in _rule_tests(r) if "field" in t})
RULE_PROBS = sorted({t["prob"] for r in RULES for t in _rule_tests(r) if "prob" in t})


def _field_values(name: str) -> list[str]:
    """Every answer that matters to the rules: yes/no, each category, each threshold and its neighbours."""
    col = SCHEMA.column(name)
    if col.kind == "yes_no":
        return ["yes", "no"]
    if col.kind == "category":
        return list(col.categories)
    cuts = {v for r in RULES for t in _rule_tests(r) if t.get("field") == name for k, v in t.items() if k != "field"}
    step = 1 if col.kind == "integer" else 0.1
    values = {col.min, col.max} | {c + d for c in cuts for d in (-step, 0, step)}
    return [f"{v:g}" for v in sorted(v for v in values if col.min <= v <= col.max)]


def _levels(forms: list[dict[str, str]], probs: dict[str, float]) -> list[int]:
    out = triage_columns(KB, typed_rows(*forms).reset_index(drop=True), probs_frame(*[probs] * len(forms)))
    return [LEVEL[v] for v in out["triage"].to_pylist()]


@st.composite
def forms_and_probs(draw):
    fields = draw(st.lists(st.sampled_from(RULE_FIELDS), unique=True, max_size=8))
    form = {f: draw(st.sampled_from(_field_values(f))) for f in fields}
    probs = {f"p_{c}": draw(st.sampled_from([0.0, 0.05, 0.12, 0.25, 0.6])) for c in RULE_PROBS}
    for cause in SCHEMA.causes:  # coherent causes: at least the largest of their conditions
        probs[f"p_cause_{cause.name}"] = max(probs.get(f"p_{c}", 0.01) for c in cause.conditions)
    return form, probs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=forms_and_probs(), field=st.sampled_from(RULE_FIELDS))
def test_blanking_a_field_never_lowers_triage_below_what_the_other_answers_require(case, field):
    """Whatever the blank field's true answer, the form with it blank is triaged at least as
    pressingly as the least pressing of those answers: a blank never silences a red flag."""
    form, probs = case
    blank = {k: v for k, v in form.items() if k != field}
    answers = [{**blank, field: v} for v in _field_values(field)]
    blank_level, *answer_levels = _levels([blank, *answers], probs)
    assert blank_level <= max(answer_levels), (blank, field)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=forms_and_probs(), condition=st.sampled_from(RULE_PROBS))
def test_a_higher_probability_never_lowers_triage(case, condition):
    form, probs = case
    higher = {**probs, f"p_{condition}": 0.9}
    cause = SCHEMA.cause_of(condition)
    higher[f"p_cause_{cause}"] = max(higher[f"p_cause_{cause}"], 0.9)
    assert _levels([form], higher)[0] <= _levels([form], probs)[0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.3, 0.3, 0.5, 1.0]), min_size=21, max_size=21), min_size=1))
def test_the_likeliest_conditions_are_a_stable_sorts_first(rows):
    """Top conditions by repeated argmax are the first of a stable sort, ties in column order."""
    import numpy as np

    from pipeline.scoring.triage import _likeliest

    p = np.array(rows)
    np.testing.assert_array_equal(_likeliest(p, 3), np.argsort(-p, axis=1, kind="stable")[:, :3])
