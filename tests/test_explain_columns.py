"""`score --explain` end to end: the contract's columns in the contract's place, reasons that cite
only answered fields of each top condition in order, ask_next that names only blank fields, and the
served model returning the same explanations when asked (params={"explain": True})."""

from __future__ import annotations

from collections import Counter

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import SCHEMA, neutral, read_rows
from test_report import Keyed

from pipeline.cli import main
from pipeline.contract.loader import default_knowledge_base
from pipeline.scoring.explain import Explainer, ExplainError
from pipeline.tracking.registry import CHAMPION_URI
from pipeline.world.examples import SAMPLE_PATH

SEP = SCHEMA.list_separator
EX = SCHEMA.explain


@pytest.fixture(scope="module")
def explained(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "scores.csv"
    report = out.with_name("batch.html")
    assert main(["score", "--input", str(SAMPLE_PATH), "--output", str(out), "--explain", "--report", str(report)]) == 0
    header, rows = read_rows(out)
    return header, rows, report


def _forms() -> dict[str, dict[str, str]]:
    frame = pd.read_csv(SAMPLE_PATH, dtype=str, keep_default_na=False, on_bad_lines="skip")
    forms: dict[str, dict[str, str]] = {}
    for r in frame.to_dict(orient="records"):  # a repeated id is rejected: the first one is scored
        forms.setdefault(neutral(r[SCHEMA.id_column]), r)
    return forms


def _answered(form: dict[str, str], field: str) -> bool:
    return form.get(field, "").strip().lower() not in {"", *SCHEMA.missing_markers}


def test_explain_adds_the_contract_columns_before_model_version(explained):
    header, rows, _ = explained
    assert header == list(SCHEMA.output_columns(explain=True))
    assert header.index(EX.columns[-1]) + 1 == header.index(EX.before)
    assert rows and all(r[EX.columns[0]] for r in rows if r["top_conditions"])


def test_reasons_follow_the_top_conditions_and_cite_only_answered_fields(explained):
    _, rows, _ = explained
    forms = _forms()
    for row in rows:
        top = row["top_conditions"].split(SEP) if row["top_conditions"] else []
        parts = row[EX.columns[0]].split(EX.reasons_separator) if row[EX.columns[0]] else []
        assert [p.split(": ")[0] for p in parts] == top
        for part in parts:
            cited = [c.strip() for c in part.split(": ", 1)[1].split(",") if c.strip()]
            ups = [c[1:] for c in cited if c.startswith("+")]
            downs = [c[1:] for c in cited if c.startswith("-")]
            assert len(ups) + len(downs) == len(cited) and len(ups) <= EX.reasons_up and len(downs) <= EX.reasons_down
            assert cited == [f"+{u}" for u in ups] + [f"-{d}" for d in downs]  # raised first, then lowered
            for field in ups + downs:
                assert field in SCHEMA.column_names and _answered(forms[row[SCHEMA.id_column]], field), (row, field)


def test_ask_next_names_only_blank_fields_at_most_the_contract_allows(explained):
    _, rows, _ = explained
    forms = _forms()
    asked = 0
    for row in rows:
        fields = row[EX.columns[1]].split(SEP) if row[EX.columns[1]] else []
        assert len(fields) <= EX.ask_next_max and len(set(fields)) == len(fields)
        for field in fields:
            assert field in SCHEMA.intake_columns and not _answered(forms[row[SCHEMA.id_column]], field)
        asked += len(fields)
    assert asked, "the sample's forms have blank fields worth asking"


def test_the_probabilities_do_not_change_with_explain(store, explained, tmp_path):
    out = tmp_path / "plain.csv"
    assert main(["score", "--input", str(SAMPLE_PATH), "--output", str(out)]) == 0
    plain = {r[SCHEMA.id_column]: r for r in read_rows(out)[1]}
    for row in explained[1]:
        assert {c: row[c] for c in SCHEMA.scores_columns} == plain[row[SCHEMA.id_column]]


def test_a_model_without_attributions_is_refused_with_a_clear_error():
    class Opaque:
        def predict_proba(self, typed):
            return np.zeros((len(typed), len(SCHEMA.probability_columns)))

    with pytest.raises(ExplainError, match="cannot explain"):
        Explainer(Opaque(), default_knowledge_base().schema)


def test_the_served_model_explains_as_the_cli_does(store, explained):
    pyfunc = mlflow.pyfunc.load_model(CHAMPION_URI)
    frame = pd.read_csv(SAMPLE_PATH, dtype=str, keep_default_na=False, on_bad_lines="skip")
    plain = pyfunc.predict(frame)
    assert not set(EX.columns) & set(plain.columns)
    out = pyfunc.predict(frame, params={"explain": True})
    assert list(out.columns) == [*SCHEMA.output_columns(explain=True), "reject_reason"]
    cli = {r[SCHEMA.id_column]: r for r in explained[1]}
    served = out[(out["reject_reason"] == "") & out[SCHEMA.id_column].isin(list(cli))]
    assert set(served[SCHEMA.id_column]) == set(cli)  # pandas skipped the file's unreadable line
    for row in served.to_dict(orient="records"):
        for column in EX.columns:
            assert row[column] == cli[row[SCHEMA.id_column]][column], column


def test_the_batch_report_counts_what_ask_next_suggested(explained):
    _, rows, report = explained
    page = Keyed()
    page.feed(report.read_text(encoding="utf-8"))
    first, anywhere = Counter(), Counter()
    for row in rows:
        fields = row[EX.columns[1]].split(SEP) if row[EX.columns[1]] else []
        anywhere.update(fields)
        first.update(fields[:1])
    shown = {k.split(":", 1)[1] for k in page.values if k.startswith("ask_any:")}
    assert shown and shown <= set(anywhere)
    assert sorted(anywhere.values(), reverse=True)[: len(shown)] == sorted((anywhere[f] for f in shown), reverse=True)
    for field in shown:
        assert int(page.values[f"ask_any:{field}"]) == anywhere[field]
        assert int(page.values[f"ask_first:{field}"]) == first[field]
