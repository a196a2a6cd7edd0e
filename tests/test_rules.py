"""The red-flag rule grammar: every mistake refused with where it is, and evaluation row by row."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from helpers import SCHEMA

from pipeline.contract.rules import RuleError, check_rule, rule_holds

A_CONDITION, A_CAUSE = SCHEMA.conditions[0], SCHEMA.cause_names[0]


@pytest.mark.parametrize(
    ("rule", "where", "words"),
    [
        ([], "when", "must be a mapping"),
        ({"all": []}, "when", "non-empty list"),
        ({"any": [{"field": "chest_pain", "is": "yes"}], "extra": 1}, "when", "nothing else"),
        ({"not": {"field": "chest_pain", "is": "yes"}, "x": 1}, "when", "one test"),
        ({"field": "no_such_field", "is": "yes"}, "when", "unknown field"),
        ({"field": "age", "is": "yes"}, "when", "`is` needs a yes/no field"),
        ({"field": "chest_pain", "is": "maybe"}, "when", "`is` needs"),
        ({"field": "sex", "in": ["alien"]}, "when", "`in` needs values among"),
        ({"field": "sex", ">=": 3}, "when", "needs a numeric field"),
        ({"field": "age", ">=": "old"}, "when", "finite number"),
        ({"field": "age", "~": 3}, "when", "unknown test"),
        ({"prob": "gout", ">=": 0.2}, "when", "unknown condition"),
        ({"cause": "fate", ">=": 0.2}, "when", "unknown cause"),
        ({"prob": A_CONDITION, ">=": 1.5}, "when", "outside [0, 1]"),
        ({"prob": A_CONDITION}, "when", "one comparator"),
        ({"all": [{"field": "chest_pain", "is": "yes"}, {"field": "x", "is": "yes"}]}, "when.all[1]", "unknown field"),
    ],
)
def test_a_broken_rule_is_refused_with_where_it_is(rule, where, words):
    with pytest.raises(RuleError, match=re.escape(words)) as err:
        check_rule(rule, SCHEMA)
    assert err.value.where == where


def test_every_rule_of_the_knowledge_base_follows_the_grammar():
    from helpers import KB

    for flag in KB.red_flags:
        check_rule(flag.when, SCHEMA)


def test_rules_hold_row_by_row_and_a_blank_satisfies_no_field_test():
    typed = pd.DataFrame(
        {
            "chest_pain": [1.0, 0.0, np.nan],
            "age": [80.0, 40.0, np.nan],
            "sex": pd.Categorical(["male", "female", None], categories=["female", "male", "other"]),
        }
    )
    probs = pd.DataFrame({f"p_{A_CONDITION}": [0.1, 0.5, 0.9], f"p_cause_{A_CAUSE}": [0.2, 0.2, 0.2]})
    cases = [
        ({"field": "chest_pain", "is": "yes"}, [True, False, False]),
        ({"field": "chest_pain", "is": "no"}, [False, True, False]),
        ({"field": "age", ">=": 65}, [True, False, False]),
        ({"field": "sex", "in": ["male"]}, [True, False, False]),
        ({"prob": A_CONDITION, ">": 0.4}, [False, True, True]),
        ({"cause": A_CAUSE, "<": 0.3}, [True, True, True]),
        ({"not": {"field": "chest_pain", "is": "yes"}}, [False, True, True]),
        ({"all": [{"field": "age", "<": 50}, {"prob": A_CONDITION, ">=": 0.5}]}, [False, True, False]),
        ({"any": [{"field": "age", ">=": 65}, {"prob": A_CONDITION, ">=": 0.9}]}, [True, False, True]),
    ]
    as_arrays = {  # the triage's mapping: numbers as arrays, a category field as its Categorical
        "chest_pain": typed["chest_pain"].to_numpy(),
        "age": typed["age"].to_numpy(),
        "sex": typed["sex"].array,
    }
    for rule, expected in cases:
        check_rule(rule, SCHEMA)
        assert rule_holds(rule, typed, probs).tolist() == expected, rule
        assert rule_holds(rule, as_arrays, probs).tolist() == expected, rule
    # several levels listed, one of them never seen, and a level not listed
    assert rule_holds({"field": "sex", "in": ["female", "other"]}, as_arrays, probs).tolist() == [False, True, False]
