"""Triage from the knowledge base's rules, applied to typed rows and given probabilities: which
red flags fire, the triage level, top conditions and specialists. No model is needed."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import KB, SCHEMA

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


@pytest.mark.parametrize(
    ("fields", "probs", "triage", "flags"),
    [
        ({"laterality": "one_leg", "leg_swelling": "yes"}, DVT, "urgent", ["likely_dvt"]),
        ({"laterality": "one_leg", "calf_pain_tenderness_warmth": "yes"}, DVT, "urgent", ["likely_dvt"]),
        (
            {"laterality": "one_leg", "leg_swelling": "yes", "chest_pain": "yes"},
            DVT,
            "emergency",
            ["possible_pulmonary_embolism", "likely_dvt"],
        ),
        ({"shortness_of_breath": "yes"}, DVT, "emergency", ["possible_pulmonary_embolism"]),
        ({"pain_at_rest": "yes", "abi": "0.4"}, {}, "urgent", ["rest_pain_arterial_disease"]),
        (
            {"pain_at_rest": "yes"},
            {"p_peripheral_artery_disease": 0.35, "p_cause_circulation": 0.35},
            "urgent",
            ["rest_pain_arterial_disease"],
        ),
        ({"potassium_mmol_l": "2.8"}, {}, "urgent", ["severe_hypokalaemia"]),
        ({"ck_u_l": "6000"}, {}, "urgent", ["very_high_ck"]),
        ({"hemoglobin_g_dl": "7.5"}, {}, "urgent", ["severe_anaemia"]),
        (
            {"onset": "sudden", "laterality": "one_leg", "muscle_weakness": "yes", "prior_stroke": "no"},
            {},
            "urgent",
            ["new_neurological_deficit"],
        ),
        ({"unintended_weight_loss": "yes"}, {}, "routine", ["unintended_weight_loss"]),
        ({"severity": "7"}, {}, "routine", ["severe_persistent_fatigue"]),
        # nothing worrying
        (
            {"laterality": "both_legs", "leg_swelling": "no", "potassium_mmol_l": "4.1", "severity": "3"},
            {},
            "self_care",
            [],
        ),
        ({}, {"p_vitamin_d_deficiency": 0.5, "p_cause_nutrient": 0.5}, "routine", []),
        # near misses: each rule's condition just fails
        ({"laterality": "both_legs", "leg_swelling": "yes"}, DVT, "routine", []),
        ({"leg_swelling": "yes"}, DVT, "routine", []),  # laterality blank satisfies no field test
        ({"laterality": "one_leg", "leg_swelling": "yes"}, {"p_deep_vein_thrombosis": 0.15}, "self_care", []),
        ({"pain_at_rest": "yes", "abi": "0.6"}, {}, "self_care", []),
        ({"pain_at_rest": "no", "abi": "0.4"}, {}, "self_care", []),
        ({"potassium_mmol_l": "3.0"}, {}, "self_care", []),
        ({"onset": "sudden", "laterality": "one_leg", "muscle_weakness": "yes"}, {}, "self_care", []),
        ({"severity": "6"}, {}, "self_care", []),
    ],
)
def test_triage_rules_fire_where_written(fields, probs, triage, flags):
    out = triage_one(fields, probs)
    assert out["triage"] == triage
    assert out["red_flags"] == ";".join(flags)


def test_nothing_worrying_is_self_care_with_primary_care_only():
    out = triage_one({}, {})
    assert out == {"top_conditions": "", "triage": "self_care", "red_flags": "", "specialists": "primary_care"}


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
