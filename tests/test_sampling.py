"""The sampler draws the same stream as the plain field-by-field sampler it replaced (kept in
tests/reference_generator.py) and computes every kept value by the same operations: the same
columns, bit for bit, and the generator left in the same state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from reference_generator import reference_columns

from pipeline.world.network import default_model, noisy_or_absent
from pipeline.world.sampling import Workspace, _present_patterns, raw_columns, sample_cells, sample_columns


def assert_same_columns(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, w in want.items():
        g = got[name]
        if isinstance(w, pa.Array | pa.ChunkedArray):
            assert g.equals(w), name
        else:
            assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
            np.testing.assert_array_equal(g, w, err_msg=name)  # NaN equals NaN here


@pytest.mark.parametrize(
    ("population", "n", "seed"),
    [("general", 100_000, 1), ("general", 777, 2), ("general", 1, 3), ("older_cardiometabolic", 30_001, 4)],
)
def test_same_columns_and_generator_state_as_the_reference(population, n, seed):
    model = default_model(population)
    ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
    assert_same_columns(sample_columns(model, n, ours, 11, "x"), reference_columns(model, n, theirs, 11, "x"))
    assert ours.bit_generator.state == theirs.bit_generator.state


def test_same_columns_on_the_tiny_model(tiny_model):
    for seed in range(3):
        ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
        assert_same_columns(sample_columns(tiny_model, 5000, ours), reference_columns(tiny_model, 5000, theirs))


def test_noisy_or_by_pattern_equals_noisy_or_by_row(model):
    """Rows with several conditions present too (sums in another order would differ in the last bit)."""
    present = np.random.default_rng(0).random((50_000, model.n_conditions)) < 0.15
    patterns, index = _present_patterns(present)
    assert len(patterns) < len(present) and (patterns[index] == present).all()
    by_row = noisy_or_absent(present, model.finding_leak, model.finding_link)
    np.testing.assert_array_equal(noisy_or_absent(patterns, model.finding_leak, model.finding_link)[index], by_row)


def test_cells_are_compact_and_raw_columns_follow_the_frames_convention(model):
    cells = sample_cells(model, 2000, np.random.default_rng(5))
    schema = model.kb.schema
    for col in schema.columns:
        if col.kind in ("category", "yes_no"):
            assert cells[col.name].dtype == np.int8
            assert cells[col.name].min() >= -1 and cells[col.name].max() < max(len(col.categories), 2)
        else:
            assert cells[col.name].dtype == np.float64
    raw = raw_columns(cells, schema)
    sex, smoker = schema.column("sex"), "diabetes"
    assert raw[sex.name].dtype == np.int64 and (raw[sex.name] == cells[sex.name]).all()
    assert np.array_equal(np.isnan(raw[smoker]), cells[smoker] < 0)


def test_a_reused_workspace_changes_nothing_and_is_not_shared_with_the_cells(model):
    """A thread passes its workspace from chunk to chunk: cells equal those sampled afresh, and a
    later chunk does not overwrite an earlier one's cells."""
    workspace = Workspace()
    first = sample_cells(model, 4000, np.random.default_rng(7), workspace=workspace)
    kept = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in first.items()}
    second = sample_cells(model, 4000, np.random.default_rng(8), workspace=workspace)
    assert_same_columns(first, kept)
    assert_same_columns(second, sample_cells(model, 4000, np.random.default_rng(8)))
    smaller = sample_cells(model, 300, np.random.default_rng(9), workspace=workspace)
    assert_same_columns(smaller, sample_cells(model, 300, np.random.default_rng(9)))
