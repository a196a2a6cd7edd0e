"""Does `ask_next` ask the right thing? On generated forms with extra fields blanked, reveal the
first suggested field (its true, generated answer) or, instead, one blanked field at random, and
compare the scoring model's log-loss against the true labels before and after. `make evaluate`
reports the three numbers; a useful suggestion lowers the log-loss clearly more than chance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.learning.cause_model import targets
from pipeline.world.generate import generate_frame
from pipeline.world.network import compile_model
from pipeline.world.value_of_information import AskNext

BLANK_SHARE = 0.5  # each answered field (but record_id and age) is blanked with this probability


@dataclass
class AskNextBenefit:
    rows: int  # forms with a suggestion and a blanked field
    log_loss_blanked: float  # mean over the conditions of the model's log-loss, extra fields blank
    log_loss_first: float  # ... after revealing the first suggested field
    log_loss_random: float  # ... after revealing one blanked field at random
    difference_se: float  # standard error of (random - first), paired over forms

    @property
    def gain_first(self) -> float:
        return self.log_loss_blanked - self.log_loss_first

    @property
    def gain_random(self) -> float:
        return self.log_loss_blanked - self.log_loss_random

    def line(self) -> str:
        return (
            f"ask_next on {self.rows:,} forms with {BLANK_SHARE:.0%} of fields blanked: model log-loss "
            f"{self.log_loss_blanked:.5f}; revealing the first suggested field {self.log_loss_first:.5f} "
            f"(-{self.gain_first:.5f}); a random blanked field {self.log_loss_random:.5f} (-{self.gain_random:.5f}); "
            f"difference {self.log_loss_random - self.log_loss_first:.5f} +/- {1.96 * self.difference_se:.5f} (95%)"
        )


def _row_log_loss(model, frame: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Per form: the mean over the conditions of the binary log-loss (natural log)."""
    p = np.clip(model.predict_proba(frame)[:, : y.shape[1]], 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=1)


def ask_next_benefit(model, kb: KnowledgeBase, n: int = 1000, seed: int = 0, population: str = "general"):
    """The model's log-loss with extra blanks, then with the first suggestion or a random blank revealed."""
    schema = kb.schema
    full = generate_frame(compile_model(kb, population), n, seed)
    y = targets(full, schema)[:, : len(schema.conditions)]
    rng = np.random.default_rng(seed)
    fields = [c for c in schema.column_names if not schema.column(c).required]
    blanked = full.copy()
    mask = np.zeros((n, len(fields)), dtype=bool)
    for i, f in enumerate(fields):
        mask[:, i] = (rng.random(n) < BLANK_SHARE) & full[f].notna().to_numpy()
        blanked.loc[mask[:, i], f] = None
    suggestions = AskNext(compile_model(kb, population))(blanked[list(schema.column_names)])
    keep = np.array([bool(s) for s in suggestions]) & mask.any(axis=1)
    first, random = blanked.copy(), blanked.copy()
    for r in np.flatnonzero(keep):
        chosen = suggestions[r][0]
        first.iloc[r, first.columns.get_loc(chosen)] = full.iloc[r][chosen]
        other = fields[rng.choice(np.flatnonzero(mask[r]))]
        random.iloc[r, random.columns.get_loc(other)] = full.iloc[r][other]
    rows = np.flatnonzero(keep)
    before, after_first, after_random = (_row_log_loss(model, f.iloc[rows], y[rows]) for f in (blanked, first, random))
    diff = after_random - after_first
    return AskNextBenefit(
        len(rows),
        float(before.mean()),
        float(after_first.mean()),
        float(after_random.mean()),
        float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
    )
