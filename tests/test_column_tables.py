"""The compact scorer's yes/no pair products found row by row (pipeline.scoring.column_tables):
the (row, pair) hits of the dense table the scorer made before, by row, and within a row in the
order of the pair's fields (the order in which a form's shares are summed)."""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.scoring import column_tables
from pipeline.scoring.column_tables import yes_pairs


@st.composite
def forms_and_pairs(draw):
    n_fields = draw(st.integers(2, 12))
    every = [(a, b) for a in range(n_fields) for b in range(a + 1, n_fields)]
    chosen = draw(st.lists(st.sampled_from(every), min_size=1, max_size=len(every), unique=True))
    flipped = draw(st.lists(st.booleans(), min_size=len(chosen), max_size=len(chosen)))
    pairs = [(b, a) if flip else (a, b) for (a, b), flip in zip(chosen, flipped, strict=True)]  # either order
    n_rows = draw(st.integers(0, 40))
    yes = np.array(draw(st.lists(st.booleans(), min_size=n_rows * n_fields, max_size=n_rows * n_fields)), dtype=bool)
    return yes.reshape(n_rows, n_fields), pairs


def _hits(rows: np.ndarray, pairs: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(rows.tolist(), pairs.tolist(), strict=True))


@settings(max_examples=300, deadline=None)
@given(forms_and_pairs())
def test_yes_pairs_are_the_dense_tables_nonzeros(case):
    yes, pairs = case
    left, right = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    pair_at = np.full((yes.shape[1],) * 2, -1)
    pair_at[left, right] = pair_at[right, left] = np.arange(len(pairs))
    rows, found = yes_pairs(yes, pair_at)
    expected_rows, expected_pairs = np.nonzero(yes[:, left] & yes[:, right])
    assert (np.diff(rows) >= 0).all()
    assert _hits(rows, found) == _hits(expected_rows, expected_pairs)
    first = np.minimum(left, right)[found] * yes.shape[1] + np.maximum(left, right)[found]
    assert all((np.diff(first[rows == r]) > 0).all() for r in np.unique(rows))  # by the fields' order in a row


def test_a_form_with_every_field_yes():
    """Every pair of every row: the longest runs of "yes" a form can have."""
    yes = np.ones((3, 5), dtype=bool)
    pairs = [(0, 4), (3, 1), (2, 3)]
    pair_at = np.full((5, 5), -1)
    for k, (a, b) in enumerate(pairs):
        pair_at[a, b] = pair_at[b, a] = k
    rows, found = yes_pairs(yes, pair_at)
    np.testing.assert_array_equal(rows, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(found, np.tile([0, 1, 2], 3))  # (0, 4), (1, 3), (2, 3) by their first field


@settings(max_examples=200, deadline=None)
@given(forms_and_pairs(), st.integers(1, 40))
def test_forms_with_many_yes_taken_a_block_at_a_time_give_the_same_pairs(case, limit):
    yes, pairs = case
    left, right = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    pair_at = np.full((yes.shape[1],) * 2, -1)
    pair_at[left, right] = pair_at[right, left] = np.arange(len(pairs))
    whole = yes_pairs(yes, pair_at)
    saved, column_tables.PAIR_CANDIDATES = column_tables.PAIR_CANDIDATES, limit
    try:
        blocked = yes_pairs(yes, pair_at)
    finally:
        column_tables.PAIR_CANDIDATES = saved
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_array_equal(blocked[1], whole[1])


def test_forms_that_say_yes_to_every_field_are_paired_in_bounded_memory():
    """9,500 forms with all 45 pair fields "yes" (990 pairs of "yes" each): looked up a block at a
    time, the temporaries stay near PAIR_CANDIDATES' arrays (all at once they were about 380 MB)."""
    yes = np.ones((9_500, 45), dtype=bool)
    pair_at = np.full((45, 45), -1)
    for k, (a, b) in enumerate([(0, 1), (2, 40), (7, 44)]):
        pair_at[a, b] = pair_at[b, a] = k
    tracemalloc.start()
    try:
        rows, found = yes_pairs(yes, pair_at)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rows, np.repeat(np.arange(9_500), 3))
    np.testing.assert_array_equal(found, np.tile([0, 1, 2], 9_500))
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB"
