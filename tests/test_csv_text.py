"""The CSV text of generated chunks is byte for byte what pyarrow's CSV writer prints for the raw
columns (the generator's previous path), on generated chunks and on values off their vocabulary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.intake.frames import csv_table_from_columns
from pipeline.world.csv_text import CsvText
from pipeline.world.generate import number_steps
from pipeline.world.sampling import raw_columns, sample_cells


def writer_text(cells: dict, schema, header: bool = False) -> bytes:
    """What the generator wrote before: pyarrow's CSV writer on the raw columns' table."""
    sink = pa.BufferOutputStream()
    table = csv_table_from_columns(raw_columns(cells, schema), schema, with_labels=True)
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="none", include_header=header))
    return sink.getvalue().to_pybytes()


def test_header_and_body_equal_the_writer(model):
    schema = model.kb.schema
    text = CsvText(schema, number_steps(model))
    cells = sample_cells(model, 20_000, np.random.default_rng(1))
    assert text.header() + text.body(cells).to_pybytes() == writer_text(cells, schema, header=True)
    assert len(text.segments) < len(text.names) / 2  # neighbouring columns do share tokens


def test_tiny_schema(tiny_model):
    text = CsvText(tiny_model.kb.schema, number_steps(tiny_model))
    cells = sample_cells(tiny_model, 3000, np.random.default_rng(2))
    assert text.body(cells).to_pybytes() == writer_text(cells, tiny_model.kb.schema)


def test_values_off_their_vocabulary_are_printed_as_the_writer_prints_them(model):
    schema = model.kb.schema
    text = CsvText(schema, number_steps(model))
    base = sample_cells(model, 50, np.random.default_rng(3))
    edits = {
        "bmi": 27.345,  # off its 0.1 grid
        "ferritin_ng_ml": -0.0,  # prints as -0
        "hemoglobin_g_dl": 1e6,  # beyond the column's bounds
        "age": 150.0,  # an integer beyond its range
        "severity": 2.5,  # not an integer
    }
    for name, value in edits.items():
        cells = dict(base)
        cells[name] = base[name].copy()
        cells[name][7] = value
        assert text.body(cells).to_pybytes() == writer_text(cells, schema), name


def test_a_number_without_a_step_is_formatted_per_row(model):
    schema = model.kb.schema
    steps = {k: v for k, v in number_steps(model).items() if k != "crp_mg_l"}
    text = CsvText(schema, steps)
    assert any(s.column == "crp_mg_l" for s in text.segments)
    cells = sample_cells(model, 5000, np.random.default_rng(4))
    assert text.body(cells).to_pybytes() == writer_text(cells, schema)
