"""Clinical vignettes written from the seed: sparse forms, as real ones are. The condition the seed
describes must be among the top three of the exact posterior under the knowledge base (the
oracle: this checks that the knowledge base says what the seed says), and triage on those
probabilities must be safe; red flags must fire from the form, with their guard fields blank,
when scored end to end by a trained model; benign presentations stay low.
Decision support on synthetic data, not a diagnosis."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import KB, SCHEMA

from pipeline.intake.stream import validate_frame
from pipeline.scoring.score import score_chunk
from pipeline.scoring.triage import triage_columns
from pipeline.world.network import default_model
from pipeline.world.oracle import posterior_probabilities

LEVEL = {name: rank for rank, name in enumerate(SCHEMA.triage_levels)}  # 0 = most pressing
# A vignette's history and medications are "no" unless it says otherwise (as a clinician writing
# one would mean); its lifestyle, symptoms and labs are as sparse as a real form's: only those named.
NO_HISTORY = {c.name: "no" for c in SCHEMA.columns if c.group in ("history", "medication")}

# (name, seed passage it follows, form cells (the rest blank), expected condition, triage at least, at most)
VIGNETTES = [
    ("claudication", "pad_claudication",
     {"age": "68", "smoking": "current", "diabetes": "yes", "pain_on_walking_relieved_by_rest": "yes",
      "muscle_cramps": "yes"}, "peripheral_artery_disease", "routine", "routine"),
    ("heavy legs after standing", "venous_pooling",
     {"age": "55", "sex": "female", "varicose_veins": "yes", "leg_heaviness": "yes",
      "worse_after_standing_or_sitting": "yes", "relieved_by_elevation": "yes", "leg_swelling": "yes",
      "laterality": "both_legs", "hours_standing_per_day": "9"}, "venous_insufficiency", "routine", "routine"),
    ("acute DVT, laterality blank", "dvt_symptoms",
     {"age": "45", "recent_immobilization": "yes", "onset": "sudden", "calf_pain_tenderness_warmth": "yes",
      "leg_swelling": "yes", "symptom_duration_weeks": "1"}, "deep_vein_thrombosis", "urgent", "urgent"),
    ("PE after a DVT", "dvt_pe",
     {"age": "45", "recent_immobilization": "yes", "onset": "sudden", "calf_pain_tenderness_warmth": "yes",
      "laterality": "one_leg", "chest_pain": "yes", "shortness_of_breath": "yes", "symptom_duration_weeks": "1"},
     "deep_vein_thrombosis", "emergency", "emergency"),
    ("iron-deficiency anaemia", "iron_oxygen",
     {"age": "30", "sex": "female", "diet_quality": "poor", "pale_skin": "yes", "general_fatigue": "yes",
      "hemoglobin_g_dl": "9.5", "ferritin_ng_ml": "8"}, "iron_deficiency_anemia", "routine", "routine"),
    ("vitamin D", "vitd_muscle",
     {"age": "60", "bone_pain": "yes", "vitamin_d_ng_ml": "9"}, "vitamin_d_deficiency", "routine", "routine"),
    ("B12", "b12_neuro",
     {"age": "70", "numbness_tingling": "yes", "balance_problems": "yes", "b12_pg_ml": "140"},
     "b12_folate_deficiency", "routine", "routine"),
    ("diabetic neuropathy", "neuropathy_causes",
     {"age": "62", "diabetes": "yes", "numbness_tingling": "yes", "burning_pain": "yes"},
     "peripheral_neuropathy", "routine", "routine"),
    ("MS", "ms_spasticity",
     {"age": "32", "sex": "female", "ms_diagnosis": "yes", "spasticity": "yes", "muscle_weakness": "yes",
      "onset": "gradual"}, "multiple_sclerosis", "routine", "routine"),
    ("Parkinson's", "parkinson_motor",
     {"age": "72", "tremor": "yes", "stiffness_or_slowness": "yes", "balance_problems": "yes"},
     "parkinsons_disease", "routine", "routine"),
    ("after a stroke", "stroke_fatigue",
     {"age": "70", "prior_stroke": "yes", "general_fatigue": "yes", "onset": "gradual",
      "symptom_duration_weeks": "40"}, "post_stroke_fatigue", "routine", "routine"),
    ("statin", "statin_myopathy",
     {"age": "64", "statin": "yes", "muscle_pain": "yes", "muscle_weakness": "yes", "onset": "gradual"},
     "statin_myopathy", "routine", "routine"),
    ("diuretic cramps", "diuretic_cramps",
     {"age": "71", "diuretic": "yes", "muscle_cramps": "yes", "potassium_mmol_l": "3.2"},
     "diuretic_electrolyte_imbalance", "routine", "routine"),
    ("beta-blocker", "bb_exercise",
     {"age": "66", "beta_blocker": "yes", "reduced_exercise_tolerance": "yes"}, "beta_blocker_fatigue",
     "routine", "routine"),
    ("steroid myopathy", "steroid_stairs",
     {"age": "58", "corticosteroid_long_term": "yes", "difficulty_climbing_stairs": "yes"},
     "corticosteroid_myopathy", "routine", "routine"),
    ("rheumatoid arthritis", "ra_joints",
     {"age": "50", "sex": "female", "joint_pain_swelling": "yes", "morning_stiffness": "yes", "crp_mg_l": "25"},
     "rheumatoid_arthritis", "routine", "routine"),
    ("IBD", "ibd_malabsorption",
     {"age": "28", "ibd_diagnosis": "yes", "abdominal_pain_or_diarrhea": "yes", "unintended_weight_loss": "yes"},
     "inflammatory_bowel_disease", "routine", "routine"),
    ("lupus", "sle_multi",
     {"age": "30", "sex": "female", "lupus_diagnosis": "yes", "joint_pain_swelling": "yes", "skin_rash": "yes"},
     "systemic_lupus", "routine", "routine"),
    ("deconditioning", "decond_inactivity",
     {"age": "45", "activity_level": "sedentary", "bmi": "33", "reduced_exercise_tolerance": "yes",
      "leg_heaviness": "yes"}, "deconditioning", "routine", "routine"),
    ("magnesium", "mg_cramps",
     {"age": "50", "diet_quality": "poor", "muscle_cramps": "yes", "magnesium_mg_dl": "1.4"},
     "magnesium_deficiency", "routine", "routine"),
]  # fmt: skip

# Red flags from the form alone, with the fields that only narrow them left blank.
RED_FLAG_VIGNETTES = [
    ("sudden weakness, stroke history blank", {"age": "70", "onset": "sudden", "muscle_weakness": "yes"},
     "emergency", "new_neurological_deficit"),
    ("chest pain and breathlessness, no leg signs", {"age": "55", "chest_pain": "yes", "shortness_of_breath": "yes"},
     "emergency", "chest_pain_with_breathlessness"),
    ("rest pain after claudication", {"age": "75", "pain_at_rest": "yes", "pain_on_walking_relieved_by_rest": "yes"},
     "urgent", "critical_limb_ischaemia"),
    ("very low haemoglobin", {"age": "40", "hemoglobin_g_dl": "6.9"}, "urgent", "severe_anaemia"),
    ("very high CK on a statin", {"age": "60", "statin": "yes", "ck_u_l": "12000"}, "urgent", "very_high_ck"),
]  # fmt: skip


@pytest.fixture(scope="module")
def model(quick_model):
    """The `quick` experiment's model (tests/conftest.py)."""
    return quick_model


def scored(model, forms: list[dict[str, str]]) -> pd.DataFrame:
    raw = pd.DataFrame([{"record_id": f"v{i}", **f} for i, f in enumerate(forms)]).fillna("")
    chunk = validate_frame(raw, SCHEMA)
    assert chunk.rejects.empty, chunk.rejects
    return score_chunk(chunk.typed, model, KB, "test").to_pandas()


@pytest.mark.parametrize(
    ("source", "form", "condition", "at_least", "at_most"),
    [pytest.param(*v[1:], id=v[0]) for v in VIGNETTES],
)
def test_vignette_ranks_its_condition_in_the_top_three_with_safe_triage(source, form, condition, at_least, at_most):
    assert source in KB.passages, source
    raw = pd.DataFrame([{"record_id": "v", **NO_HISTORY, **form}]).fillna("")
    typed = validate_frame(raw, SCHEMA).typed
    exact = posterior_probabilities(default_model(), typed).reset_index(drop=True)
    row = {k: v[0].as_py() for k, v in triage_columns(KB, typed.reset_index(drop=True), exact).items()}
    top = row["top_conditions"].split(SCHEMA.list_separator)
    assert condition in top, (top, exact.iloc[0].nlargest(4).round(3).to_dict())
    assert LEVEL[at_most] <= LEVEL[row["triage"]] <= LEVEL[at_least], (row["triage"], row["red_flags"])


@pytest.mark.parametrize(("form", "triage", "flag"), [pytest.param(*v[1:], id=v[0]) for v in RED_FLAG_VIGNETTES])
def test_red_flag_vignette_fires_from_the_form(model, form, triage, flag):
    row = scored(model, [form]).iloc[0]
    assert row["triage"] == triage and flag in row["red_flags"].split(SCHEMA.list_separator)


def test_benign_soreness_stays_self_care_and_a_bare_form_is_routine(model):
    benign = {"age": "24", "activity_level": "active", "soreness_only_after_exercise": "yes",
              "symptom_duration_weeks": "1", "severity": "2", "bmi": "22"}  # fmt: skip
    rows = scored(model, [benign, {"age": "40"}])
    assert rows["triage"].tolist() == ["self_care", "routine"]
    assert rows["red_flags"].tolist() == ["", ""]
