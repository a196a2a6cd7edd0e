"""Red-flag rules: their grammar (checked when the knowledge base loads) and their evaluation.

A rule is a nested mapping, written in data/knowledge_base.yaml:

    {all: [rule, ...]}   {any: [rule, ...]}   {not: rule}
    {field: F, is: yes|no}   {field: F, in: [category, ...]}   {field: F, <op>: number}
    {prob: CONDITION, <op>: p}   {cause: CAUSE, <op>: p}

with <op> one of >=, >, <=, <. A blank field satisfies no field test.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.contract.schema import Schema

COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
COMPARATORS = tuple(COMPARE)


class RuleError(ValueError):
    """A rule breaks the grammar; `where` locates it inside the rule."""

    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


def check_rule(test: Any, schema: Schema, where: str = "when") -> None:
    """Raise RuleError unless `test` follows the grammar and names known fields, conditions, causes."""
    if not isinstance(test, dict) or not test:
        raise RuleError(where, f"a test must be a mapping, got {test!r}")
    if "all" in test or "any" in test:
        key = "all" if "all" in test else "any"
        if len(test) != 1 or not isinstance(test[key], list) or not test[key]:
            raise RuleError(where, f"`{key}` takes a non-empty list and nothing else")
        for k, sub in enumerate(test[key]):
            check_rule(sub, schema, f"{where}.{key}[{k}]")
    elif "not" in test:
        if len(test) != 1:
            raise RuleError(where, "`not` takes one test and nothing else")
        check_rule(test["not"], schema, f"{where}.not")
    elif "prob" in test or "cause" in test:
        _check_probability_test(test, schema, where)
    else:
        _check_field_test(test, schema, where)


def _number(test: dict, key: str, where: str) -> float:
    value = test[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise RuleError(where, f"`{key}` must be a finite number, got {value!r}")
    return float(value)


def _check_probability_test(test: dict, schema: Schema, where: str) -> None:
    kind = "prob" if "prob" in test else "cause"
    pool = schema.conditions if kind == "prob" else schema.cause_names
    if test[kind] not in pool:
        raise RuleError(where, f"unknown {'condition' if kind == 'prob' else 'cause'} {test[kind]!r}")
    comparators = [k for k in test if k in COMPARATORS]
    if len(comparators) != 1 or len(test) != 2:
        raise RuleError(where, f"a probability test needs one comparator of {COMPARATORS}")
    if not 0 <= _number(test, comparators[0], where) <= 1:
        raise RuleError(where, f"`{comparators[0]}` = {test[comparators[0]]} is outside [0, 1]")


def _check_field_test(test: dict, schema: Schema, where: str) -> None:
    fld = test.get("field")
    if not fld:
        raise RuleError(where, "missing `field`")
    if fld not in schema.column_names:
        raise RuleError(where, f"unknown field {fld!r}")
    col = schema.column(fld)
    ops = [k for k in test if k != "field"]
    if len(ops) != 1 or ops[0] not in ("is", "in", *COMPARATORS):
        raise RuleError(where, f"unknown test {test!r}")
    op, value = ops[0], test[ops[0]]
    if op == "is":
        if col.kind != "yes_no" or value not in ("yes", "no"):
            raise RuleError(where, f"`is` needs a yes/no field and 'yes' or 'no' (field {fld!r})")
    elif op == "in":
        if col.kind != "category" or not isinstance(value, list) or not set(value) <= set(col.categories):
            raise RuleError(where, f"`in` needs values among {list(col.categories)} of {fld!r}")
    elif col.kind not in ("integer", "number"):
        raise RuleError(where, f"a comparison needs a numeric field, {fld!r} is {col.kind}")
    else:
        _number(test, op, where)


def rule_holds(test: dict, typed: Mapping, probs: Mapping) -> np.ndarray:
    """Where a rule holds, row by row; a blank field satisfies no field test.

    `typed` and `probs` are frames (a typed intake frame, the probabilities) or mappings from
    column name to an array of the same values (categories as text, blanks NaN or None, or as a
    pandas Categorical).
    """
    if "all" in test:
        return np.logical_and.reduce([rule_holds(t, typed, probs) for t in test["all"]])
    if "any" in test:
        return np.logical_or.reduce([rule_holds(t, typed, probs) for t in test["any"]])
    if "not" in test:
        return ~rule_holds(test["not"], typed, probs)
    op = next((k for k in test if k in COMPARE), None)
    if "prob" in test or "cause" in test:
        column = f"p_{test['prob']}" if "prob" in test else f"p_cause_{test['cause']}"
        return COMPARE[op](np.asarray(probs[column]), test[op])
    values = typed[test["field"]]
    if "is" in test:
        return np.asarray(values, dtype=float) == (1.0 if test["is"] == "yes" else 0.0)
    if "in" in test:
        codes = getattr(values, "codes", None)
        if codes is not None:  # a categorical: its levels tested once, each row by its code (-1 blank)
            listed = np.isin(np.asarray(values.categories, dtype=object), list(test["in"]))
            return np.append(listed, False)[np.asarray(codes)]
        return np.isin(np.asarray(values, dtype=object), list(test["in"]))
    return COMPARE[op](np.asarray(values, dtype=float), test[op])  # NaN compares False
