"""What a batch looks like, accumulated chunk by chunk in flat memory: rows and rejects, triage,
red flags, specialists, the probabilities' distribution, and each field's blanks and values
(for drift against the training population)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import Column

PROBABILITY_BINS = np.linspace(0.0, 1.0, 21)
NUMBER_BINS = 10  # deciles of the reference population's answered values


def number_edges(values: np.ndarray) -> np.ndarray:
    """Inner bin edges of a number field: the deciles of its answered reference values."""
    answered = values[~np.isnan(values)]
    if not len(answered):
        return np.array([])
    return np.unique(np.quantile(answered, np.linspace(0, 1, NUMBER_BINS + 1)[1:-1]))


@dataclass
class FieldCounts:
    """One field's blanks and a histogram of its answers (categories, yes/no, or number bins)."""

    column: Column
    edges: np.ndarray  # numbers: inner bin edges; others unused
    blank: int = 0
    answered: Counter = field(default_factory=Counter)

    def add(self, values: pd.Series) -> None:
        if self.column.kind == "category":
            self.blank += int(values.isna().sum())
            self.answered.update(values.dropna().astype(str).tolist())
            return
        v = values.to_numpy(dtype=float)
        blank = np.isnan(v)
        self.blank += int(blank.sum())
        if self.column.kind == "yes_no":
            self.answered.update(np.where(v[~blank] == 1.0, "yes", "no").tolist())
        else:
            self.answered.update(np.searchsorted(self.edges, v[~blank], side="right").tolist())

    def shares(self) -> dict[str, float]:
        """Share of each bin (blank included) among all rows."""
        total = self.blank + sum(self.answered.values())
        if not total:
            return {}
        return {"blank": self.blank / total, **{str(k): n / total for k, n in self.answered.items()}}


@dataclass
class BatchProfile:
    """Counts of one scored batch; `observe` is called with each chunk and its scores."""

    kb: KnowledgeBase
    edges: dict[str, np.ndarray]
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    reject_reasons: Counter = field(default_factory=Counter)
    triage: Counter = field(default_factory=Counter)
    red_flags: Counter = field(default_factory=Counter)
    specialists: Counter = field(default_factory=Counter)
    top_conditions: Counter = field(default_factory=Counter)
    ask_next: Counter | None = None  # with --explain: how often each field is asked first / at all
    ask_next_first: Counter | None = None
    probability_sum: np.ndarray | None = None
    probability_hist: np.ndarray | None = None
    fields: dict[str, FieldCounts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        schema = self.kb.schema
        n = len(schema.probability_columns)
        self.probability_sum = np.zeros(n)
        self.probability_hist = np.zeros((n, len(PROBABILITY_BINS) - 1), dtype=np.int64)
        self.fields = {c.name: FieldCounts(c, self.edges.get(c.name, np.array([]))) for c in schema.columns}

    def observe(self, chunk, scores: pa.Table | None) -> None:
        """Add one validated chunk (pipeline.intake.stream.ValidatedChunk) and its scores table."""
        self.rows_read += chunk.rows_read
        self.rows_rejected += chunk.rows_rejected
        for (fld, reason), n in chunk.rejects.groupby(["field", "reason"]).size().items():
            self.reject_reasons[(fld or "(row)", _reason_kind(reason))] += int(n)
        self.add_typed(chunk.typed)
        if scores is not None and scores.num_rows:
            self.add_scores(scores)

    def add_typed(self, typed: pd.DataFrame) -> None:
        for name, counts in self.fields.items():
            counts.add(typed[name])

    def add_scores(self, scores: pa.Table) -> None:
        schema = self.kb.schema
        sep = schema.list_separator
        self.rows_scored += scores.num_rows
        p = np.column_stack([scores.column(c).to_numpy() for c in schema.probability_columns])
        self.probability_sum += p.sum(axis=0)
        for j in range(p.shape[1]):
            self.probability_hist[j] += np.histogram(p[:, j], bins=PROBABILITY_BINS)[0]
        self.triage.update(scores.column("triage").to_pylist())
        for column, counter in (
            ("red_flags", self.red_flags),
            ("specialists", self.specialists),
            ("top_conditions", self.top_conditions),
        ):
            for cell in scores.column(column).to_pylist():
                if cell:
                    counter.update(cell.split(sep))
        ask_column = schema.explain.columns[-1]
        if ask_column in scores.column_names:
            self.ask_next = self.ask_next if self.ask_next is not None else Counter()
            self.ask_next_first = self.ask_next_first if self.ask_next_first is not None else Counter()
            for cell in scores.column(ask_column).to_pylist():
                if cell:
                    fields = cell.split(sep)
                    self.ask_next.update(fields)
                    self.ask_next_first[fields[0]] += 1


def _reason_kind(reason: str) -> str:
    """A reject reason without the row-specific part (which row an id was first used at)."""
    return reason.split(" (first used at row")[0]


def reference_profile(kb: KnowledgeBase, typed: pd.DataFrame) -> BatchProfile:
    """The profile of a reference sample (the training population), defining the number bins."""
    edges = {
        c.name: number_edges(typed[c.name].to_numpy(dtype=float))
        for c in kb.schema.columns
        if c.kind in ("integer", "number")
    }
    profile = BatchProfile(kb, edges)
    profile.add_typed(typed)
    return profile


def population_stability_index(batch: dict[str, float], reference: dict[str, float], floor: float = 1e-4) -> float:
    """PSI = sum over bins of (batch - reference) * ln(batch / reference), bins floored at `floor`.

    >>> round(population_stability_index({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}), 6)
    0.0
    >>> round(population_stability_index({"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}), 4)
    0.8789
    """
    keys = set(batch) | set(reference)
    b = np.array([max(batch.get(k, 0.0), floor) for k in sorted(keys)])
    r = np.array([max(reference.get(k, 0.0), floor) for k in sorted(keys)])
    return float(np.sum((b - r) * np.log(b / r)))
