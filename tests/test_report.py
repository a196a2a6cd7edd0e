"""`score --report`: one self-contained page about the batch whose numbers agree with the scores
and rejects files it was written beside (parsed from the page, not from the code that wrote it)."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser

import pytest
from helpers import KB, SCHEMA, read_rows

from pipeline.cli import main
from pipeline.reporting.profile import population_stability_index
from pipeline.world.examples import SAMPLE_PATH


class Keyed(HTMLParser):
    """The text of every element with a data-key attribute, and every src and href on the page."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.links: list[str] = []
        self._key: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._key = attrs.get("data-key")
        self.links += [attrs[a] for a in ("src", "href") if a in attrs]

    def handle_data(self, data):
        if self._key is not None:
            self.values[self._key] = self.values.get(self._key, "") + data.strip()

    def handle_endtag(self, tag):
        self._key = None


@pytest.fixture(scope="module")
def batch(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code = main(
        ["score", "--input", str(SAMPLE_PATH), "--output", str(out / "scores.csv"), "--report", str(out / "batch.html")]
    )
    assert code == 0
    page = (out / "batch.html").read_text(encoding="utf-8")
    parsed = Keyed()
    parsed.feed(page)
    return page, parsed, read_rows(out / "scores.csv")[1], read_rows(out / "scores.rejects.csv")[1]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_counts_match_the_scores_and_rejects_files(batch):
    _, page, scores, rejects = batch
    rejected = {r["row"] for r in rejects}
    assert number(page.values["rows_read"]) == len(scores) + len(rejected)
    assert number(page.values["rows_scored"]) == len(scores)
    assert number(page.values["rows_rejected"]) == len(rejected)
    for level in SCHEMA.triage_levels:
        assert number(page.values[f"triage:{level}"]) == sum(r["triage"] == level for r in scores), level
    fired = Counter(f for r in scores for f in r["red_flags"].split(SCHEMA.list_separator) if f)
    for flag in KB.red_flags:
        assert number(page.values[f"red_flag:{flag.name}"]) == fired[flag.name], flag.name
    listed = Counter(c for r in scores for c in r["top_conditions"].split(SCHEMA.list_separator) if c)
    for condition in SCHEMA.conditions:
        assert number(page.values[f"top:{condition}"]) == listed[condition], condition
    for column in SCHEMA.probability_columns:
        mean = sum(float(r[column]) for r in scores) / len(scores)
        assert number(page.values[f"mean:{column}"]) == pytest.approx(mean, abs=6e-4), column
    reasons = Counter((r["field"] or "(row)") for r in rejects)
    on_page = Counter()
    for key, value in page.values.items():
        if key.startswith("reject:"):
            on_page[key.split(":")[1]] += int(number(value))
    assert on_page == reasons


def test_the_page_is_self_contained_and_says_it_is_not_a_diagnosis(batch):
    text, page, scores, _ = batch
    assert page.links and all(link.startswith("data:image/png;base64,") for link in page.links)
    assert "http://" not in text and "https://" not in text
    assert text.count("not a diagnosis") >= 2
    assert page.values["model_version"] == scores[0]["model_version"]
    assert any(key.startswith("quality:val.log_loss_ratio_to_oracle") for key in page.values)


def test_drift_lists_every_field_with_its_blank_rate(batch):
    _, page, _, _ = batch
    for column in SCHEMA.columns:
        assert f"psi:{column.name}" in page.values and f"blank:{column.name}" in page.values, column.name
        assert number(page.values[f"psi:{column.name}"]) >= 0


def test_stability_index_by_hand():
    assert population_stability_index({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5) = 0.2351 + 0.6438
    assert population_stability_index({"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.8789, abs=1e-4)


def test_a_batch_read_from_standard_input_is_named_so(store, tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SAMPLE_PATH.read_bytes())))
    page_path = tmp_path / "batch.html"
    assert main(["score", "--input", "-", "--output", str(tmp_path / "s.csv"), "--report", str(page_path)]) == 0
    page = page_path.read_text(encoding="utf-8")
    assert "standard input &middot; scored" in page
    parsed = Keyed()
    parsed.feed(page)
    assert number(parsed.values["rows_read"]) == len(read_rows(SAMPLE_PATH)[1])  # every record of the piped file
