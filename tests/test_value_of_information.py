"""What to ask next, under the knowledge base: the answer's distribution recovered from the exact
posteriors adds back up to them, matches the generator's frequencies, only blank fields are
suggested, and revealing the first suggestion helps the model more than revealing a random blank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import SCHEMA

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.ask_next_check import ask_next_benefit
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model
from pipeline.world.oracle import posterior_probabilities
from pipeline.world.value_of_information import AskNext, _outcome_weights, questions

K = len(SCHEMA.probability_columns)


@pytest.fixture(scope="module")
def model():
    return default_model()


def _bare(model, age: int, **answers) -> pd.DataFrame:
    """A typed form with only age and the given answers."""
    frame = generate_frame(model, 1, 0).head(1).copy()
    for c in SCHEMA.column_names:
        if c not in (SCHEMA.id_column, "age"):
            frame[c] = pd.Series([None], dtype=frame[c].dtype)
    frame["age"] = age
    for field, value in answers.items():
        frame[field] = pd.Series([value], dtype=frame[field].dtype)
    return frame


def test_every_field_the_network_reads_is_a_question_and_nothing_else(model):
    asked = {q.field for q in questions(model)}
    assert asked == set(SCHEMA.column_names) - {SCHEMA.id_column, "age"}
    assert all(len(q.values) >= 2 for q in questions(model))


def test_the_answer_distribution_adds_the_posteriors_back_up(model):
    forms = generate_frame(model, 60, 11)
    forms["leg_swelling"] = np.nan  # ask about a finding, a risk factor and a category
    forms["diabetes"] = np.nan
    forms["smoking"] = pd.Series([None] * len(forms), dtype=forms["smoking"].dtype)
    base = posterior_probabilities(model, forms).to_numpy()[:, :K]
    for field, values in (
        ("leg_swelling", (0.0, 1.0)),
        ("diabetes", (0.0, 1.0)),
        ("smoking", SCHEMA.column("smoking").categories),
    ):
        post = []
        for v in values:
            f = forms.copy()
            f[field] = pd.Series([v] * len(f), index=f.index).astype(forms[field].dtype)
            post.append(posterior_probabilities(model, f).to_numpy()[:, :K])
        post = np.stack(post, axis=1)
        w = _outcome_weights(base, post)
        assert np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
        np.testing.assert_allclose((w[:, :, None] * post).sum(axis=1), base, atol=1e-6, err_msg=field)


def test_the_answer_distribution_matches_the_generator(model):
    """P(smoking = v | age 60) from the posteriors, against its frequency among generated 60-year-olds."""
    form = _bare(model, 60)
    base = posterior_probabilities(model, form).to_numpy()[:, :K]
    levels = SCHEMA.column("smoking").categories
    post = np.stack(
        [posterior_probabilities(model, _bare(model, 60, smoking=v)).to_numpy()[:, :K] for v in levels], axis=1
    )
    w = _outcome_weights(base, post)[0]
    sample = generate_frame(model, 300_000, 5)
    sixty = sample.loc[(sample["age"] == 60) & sample["smoking"].notna(), "smoking"]
    freq = sixty.value_counts(normalize=True).reindex(list(levels)).to_numpy()
    se = np.sqrt(freq * (1 - freq) / len(sixty))
    assert np.all(np.abs(w - freq) < 4 * se + 1e-3), (w, freq, len(sixty))


def test_only_blank_fields_are_suggested_most_informative_first(model):
    forms = generate_frame(model, 40, 23)
    rng = np.random.default_rng(1)
    for c in SCHEMA.column_names:
        if c not in (SCHEMA.id_column, "age"):
            forms.loc[rng.random(len(forms)) < 0.6, c] = None
    ask = AskNext(model, max_fields=3)
    gains, _ = ask.gains(forms)
    suggested = ask(forms)
    fields = [q.field for q in ask.questions]
    assert any(suggested)
    for r, names in enumerate(suggested):
        assert len(names) <= 3 and all(pd.isna(forms.iloc[r][n]) for n in names)
        g = [gains[r, fields.index(n)] for n in names]
        assert g == sorted(g, reverse=True)
    full = generate_frame(model, 5, 2)
    full_gains, _ = ask.gains(full.dropna(axis=1, how="any").reindex(columns=full.columns))
    complete = full.notna().all(axis=0)
    for qi, q in enumerate(ask.questions):
        if complete[q.field]:
            assert np.isnan(full_gains[:, qi]).all()  # an answered field is never scored


def test_revealing_the_first_suggestion_helps_the_model_more_than_a_random_blank(quick_model):
    benefit = ask_next_benefit(quick_model, default_knowledge_base(), n=500, seed=4)
    assert benefit.rows > 400
    assert benefit.gain_first > 0 and benefit.gain_first > benefit.gain_random, benefit.line()
