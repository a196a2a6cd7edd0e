"""A function's rows at the values met so far, kept from call to call: chunk after chunk, a number
column or a lab meets the same few thousand values, and a row computed once need not be again.

Used by the compact model's per-column tables (pipeline.scoring.column_tables) and by the labs'
likelihoods (pipeline.world.network.lab_likelihoods). The values are kept sorted (NaN last, a
value like any other) and found by binary search; the kept state is replaced whole, so a thread
reading it meanwhile (the oracle scores chunks on threads) sees the old state or the new one.

    >>> kept = KeptRows(width=1)
    >>> rows, hit = kept.look_up(np.array([2.0, np.nan]))
    >>> hit.tolist()
    [False, False]
    >>> kept.keep(np.array([2.0, np.nan]), np.array([[20.0], [-1.0]]), bound=10)
    >>> rows, hit = kept.look_up(np.array([np.nan, 3.0, 2.0]))
    >>> hit.tolist(), rows[hit, 0].tolist(), len(kept)
    ([True, False, True], [-1.0, 20.0], 2)
"""

from __future__ import annotations

import numpy as np


class KeptRows:
    """Rows of `width` numbers at sorted values, up to a bound on how many values are kept."""

    def __init__(self, width: int):
        self._state = (np.empty(0), np.empty((0, width)))  # values (sorted), their rows: replaced whole

    def __len__(self) -> int:
        return len(self._state[0])

    @property
    def values(self) -> np.ndarray:
        return self._state[0]

    def look_up(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, hit): a (len(x), width) array holding the kept row of each value of `x` where `hit`
        (its other rows are to be filled by the caller)."""
        values, rows = self._state
        out = np.empty((len(x), rows.shape[1]))
        if not len(values):
            return out, np.zeros(len(x), dtype=bool)
        at = np.minimum(np.searchsorted(values, x), len(values) - 1)  # NaN sorts last, here as in `values`
        found = values[at]
        hit = (found == x) | (np.isnan(found) & np.isnan(x))
        out[hit] = rows[at[hit]]
        return out, hit

    def keep(self, x: np.ndarray, rows: np.ndarray, bound: int) -> None:
        """Keep values not kept yet and their rows, unless that would make more than `bound` values."""
        values, kept = self._state
        if len(x) == 0 or len(values) + len(x) > bound:
            return
        merged = np.concatenate([values, x])
        order = np.argsort(merged, kind="stable")
        self._state = (merged[order], np.concatenate([kept, rows])[order])
