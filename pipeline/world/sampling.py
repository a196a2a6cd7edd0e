"""One chunk of synthetic intake rows and their true conditions, sampled from the compiled model.

The generator's draws come in a fixed order: age, each person field and risk factor, the
conditions, the findings (and the integer findings' values), which labs are abnormal, each lab's
value, then the blanks; so a chunk depends only on its generator. Every value kept is computed by
the same floating-point operations as the plain field-by-field sampler this replaced (kept in
`tests/reference_generator.py`; the tests compare the two byte for byte). What is faster: the
noisy-OR is computed once per distinct set of present conditions instead of once per row, a
blanked lab's value is never computed, categories and yes/no travel as int8 codes, and large
temporaries are avoided (fresh memory pages cost more here than the arithmetic).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import expit, ndtr, ndtri

from pipeline.contract.knowledge import Lab, NumericDistribution
from pipeline.contract.schema import Schema
from pipeline.world.network import CompiledModel, noisy_or_absent

BLOCK_ROWS = 8192  # rows of condition logits held at once
MAX_PATTERN_BITS = 22  # up to this many conditions, distinct sets are found through a 2^C table


class Workspace:
    """Scratch arrays one thread reuses from chunk to chunk: fresh pages cost more than the arithmetic."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype=np.float64, order: str = "C") -> np.ndarray:
        """An uninitialised array: the same memory each time `name` is asked for with the same shape."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype or not a.flags[f"{order}_CONTIGUOUS"]:
            a = self._arrays[name] = np.empty(shape, dtype=dtype, order=order)
        return a


def _round_to_step(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a multiple of step so the value prints as its short decimal."""
    if step >= 1:
        return np.rint(x / step) * step
    inv = round(1.0 / step)
    return np.rint(x * inv) / inv


def _numeric_field(uniform: np.ndarray, dist: NumericDistribution) -> np.ndarray:
    """A person field: Normal(mean, sd) truncated to [min, max] by inverse CDF, rounded to its step."""
    a, b = ndtr((dist.min - dist.mean) / dist.sd), ndtr((dist.max - dist.mean) / dist.sd)
    x = np.clip(dist.mean + dist.sd * ndtri(a + uniform * (b - a)), dist.min, dist.max)
    return np.clip(_round_to_step(x, dist.step), dist.min, dist.max)


def _at_or_above(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many (sorted) edges each value is at or above: np.searchsorted(edges, values, "right"), faster."""
    count = np.zeros(len(values), dtype=np.int64)
    for edge in edges:
        count += values >= edge
    return count


def _categorical(uniform: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    probs = np.exp(log_prior)
    return _at_or_above(np.cumsum(probs), uniform * np.sum(probs))


def _lab_values(uniform: np.ndarray, lab: Lab, abnormal: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """A lab's value for each row, from its normal or abnormal distribution (truncated, rounded)."""
    lo, hi = (np.log(lower) if lower > 0 else -np.inf, np.log(upper)) if lab.scale == "log" else (lower, upper)
    means = np.array([lab.normal.mean, lab.abnormal.mean])
    sds = np.array([lab.normal.sd, lab.abnormal.sd])
    which = abnormal.astype(np.intp)
    a, b = ndtr((lo - means) / sds)[which], ndtr((hi - means) / sds)[which]
    mean, sd = means[which], sds[which]
    x = np.clip(mean + sd * ndtri(a + uniform * (b - a)), lo, hi)
    if lab.scale == "log":
        x = np.exp(x)
    return np.clip(_round_to_step(x, lab.step), lower, upper)


def _present_patterns(present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 0/1 condition matrix (U, C) and each row's index into them."""
    n, c = present.shape
    if c > MAX_PATTERN_BITS:
        return present, np.arange(n)
    packed = np.zeros((n, 4), dtype=np.uint8)
    packed[:, : -(-c // 8)] = np.packbits(present, axis=1, bitorder="little")
    keys = packed.view("<u4").ravel()
    seen = np.zeros(1 << c, dtype=bool)  # a table over every possible set: no sort
    seen[keys] = True
    distinct = np.flatnonzero(seen)
    position = np.empty(1 << c, dtype=np.intp)
    position[distinct] = np.arange(len(distinct))
    patterns = np.unpackbits(distinct.astype("<u4").view(np.uint8).reshape(-1, 4), axis=1, count=c, bitorder="little")
    return patterns.astype(bool), position[keys]


def _switched_on(rng: np.random.Generator, ws: Workspace, name: str, patterns, index, leak, link) -> np.ndarray:
    """(K, n) noisy-OR outcomes, one row of draws each: on where the draw is at least P(absent | conditions)."""
    absent = np.ascontiguousarray(noisy_or_absent(patterns, leak, link).T)  # (K, U), once per pattern
    on, uniform = ws.array(name, (len(absent), len(index)), bool), ws.array("uniform", (len(index),))
    for k, row in enumerate(absent):
        np.greater_equal(rng.random(out=uniform), row[index], out=on[k])
    return on


def _parents(model: CompiledModel, rng: np.random.Generator, n: int, ws: Workspace, cols: dict) -> tuple:
    """Age, person fields and risk factors in order; returns the design matrix and each one's codes."""
    kb, pop = model.kb, model.population
    uniform = ws.array("uniform", (n,))  # one buffer for each field's draws
    age = _numeric_field(rng.random(out=uniform), pop.numeric["age"])
    cols["age"] = age
    codes = []
    x = ws.array("x", (n, len(model.feature_names)), order="F")  # column-major: fast column writes
    x.fill(0.0)
    x[:, 0] = (age - 50.0) / 10.0
    # A risk factor's features, copied next to each other as x[:, used] would be (the same BLAS call).
    used_x = ws.array("used_x", (n, int(np.count_nonzero(model.risk_weights, axis=0).max(initial=0))), order="F")
    for v, var in enumerate(model.parent_vars):
        rng.random(out=uniform)
        if var.kind == "band":
            value = _numeric_field(uniform, pop.numeric[var.name])
            cols[var.name] = value
            code = _at_or_above(np.array(kb.bands[var.name].cuts), value)
        elif var.kind in ("category", "yes_no"):
            code = _categorical(uniform, var.log_prior)
        else:
            weights = model.risk_weights[:, var.risk_index]
            used = np.flatnonzero(weights)
            for j, f in enumerate(used):
                used_x[:, j] = x[:, f]
            logit = used_x[:, : len(used)] @ weights[used] + model.risk_bias[var.risk_index]
            code = (uniform < expit(logit)).astype(np.int64)
        model.set_features(x, v, code)
        codes.append(code)
        if var.kind != "band":
            cols[var.name] = code
    return x, codes


def _conditions(model: CompiledModel, rng: np.random.Generator, x: np.ndarray, ws: Workspace) -> np.ndarray:
    """(n, C) true conditions, logistic in the person fields and risk factors.

    In blocks of rows (each row's logits are the same whatever the block): the same draws as one
    (n, C) call, and no (n, C) float arrays, whose fresh pages cost more than the arithmetic."""
    present = ws.array("present", (len(x), model.n_conditions), bool)
    for start in range(0, len(x), BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        p = expit(model.condition_logits(x[rows]))
        np.less(rng.random(p.shape), p, out=present[rows])
    return present


def _findings(model: CompiledModel, finding_on: np.ndarray, rng: np.random.Generator, cols: dict) -> None:
    """Each finding's form value; an integer finding draws its value from its present or absent range."""
    schema, n = model.kb.schema, finding_on.shape[1]
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "integer":
            lo_p, hi_p = f.present_range
            lo_a, hi_a = f.absent_range
            on_value, off_value = rng.integers(lo_p, hi_p + 1, n), rng.integers(lo_a, hi_a + 1, n)
            cols[f.field] = np.where(finding_on[j], on_value, off_value).astype(float)
        elif col.kind == "category":
            cols[f.field] = np.where(finding_on[j], col.categories.index(f.present), col.categories.index(f.absent))
        else:
            cols[f.field] = finding_on[j]


def _record_ids(first_id: int, n: int, id_prefix: str) -> pa.Array:
    numbers = pc.utf8_lpad(pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()), 8, "0")
    return pc.binary_join_element_wise(f"{id_prefix}-", numbers, "")


def sample_cells(
    model: CompiledModel,
    n: int,
    rng: np.random.Generator,
    first_id: int = 1,
    id_prefix: str = "syn",
    workspace: Workspace | None = None,
) -> dict[str, object]:
    """n synthetic intake rows with their label_<condition> columns, as compact cells: the record id
    (Arrow strings), int8 codes for categories and yes/no (no=0, yes=1; -1 blank), float64 for
    integers and numbers (NaN blank), int8 labels. `raw_columns` turns them into raw columns.
    The cells never share memory with `workspace`, which a thread may pass again for its next chunk."""
    ws = workspace or Workspace()
    schema, parent_labs = model.kb.schema, model.parent_labs
    cols: dict[str, object] = {}
    x, codes = _parents(model, rng, n, ws, cols)
    present = _conditions(model, rng, x, ws)
    patterns, index = _present_patterns(present)
    finding_on = _switched_on(rng, ws, "findings", patterns, index, model.finding_leak, model.finding_link)
    _findings(model, finding_on, rng, cols)
    lab_abnormal = _switched_on(rng, ws, "labs", patterns, index, model.lab_leak, model.lab_link)
    lab_draws = ws.array("lab_draws", (len(model.labs) + len(parent_labs), n))
    for row in lab_draws:
        rng.random(out=row)
    blank_rows, uniform = ws.array("blank", (len(schema.columns), n), bool), ws.array("uniform", (n,))
    for k, col in enumerate(schema.columns):
        np.less(rng.random(out=uniform), model.kb.blank_rates[col.name], out=blank_rows[k])
    blank = {col.name: blank_rows[k] for k, col in enumerate(schema.columns)}

    labs = (*model.labs, *parent_labs)
    abnormal = [*lab_abnormal, *(codes[model.var_index(lab.parent)] == 1 for lab in parent_labs)]
    for lab, draws, abnormal_here in zip(labs, lab_draws, abnormal, strict=True):
        col, kept = schema.column(lab.name), np.flatnonzero(~blank[lab.name])
        cols[lab.name] = np.full(n, np.nan)  # a blank lab's value is never computed
        cols[lab.name][kept] = _lab_values(draws[kept], lab, abnormal_here[kept], col.min, col.max)
    return _cells(model, cols, blank, present, _record_ids(first_id, n, id_prefix))


def _cells(model: CompiledModel, cols: dict, blank: dict, present: np.ndarray, ids: pa.Array) -> dict[str, object]:
    """Sampled values with their blanks applied, in the schema's order, then the labels."""
    schema = model.kb.schema
    out: dict[str, object] = {schema.id_column: ids}
    lab_names = {lab.name for lab in (*model.labs, *model.parent_labs)}  # blanks already applied
    for col in schema.columns:
        v, blank_here = cols[col.name], blank[col.name]
        if col.kind in ("category", "yes_no"):
            out[col.name] = v.astype(np.int8)
            out[col.name][blank_here] = -1
        else:
            out[col.name] = v if col.name in lab_names else np.where(blank_here, np.nan, v)
    labels = present.T.astype(np.int8)
    out.update({f"label_{name}": labels[c] for c, name in enumerate(model.conditions)})
    return out


def raw_columns(cells: dict, schema: Schema) -> dict[str, object]:
    """Compact cells as raw columns (see pipeline.intake.frames: category codes int64 with -1 blank,
    yes/no and numbers float64 with NaN blank, int8 labels)."""
    out = dict(cells)
    for col in schema.columns:
        code = cells[col.name]
        if col.kind == "category":
            out[col.name] = code.astype(np.int64)
        elif col.kind == "yes_no":
            out[col.name] = np.where(code < 0, np.nan, code.astype(float))
    return out


def sample_columns(
    model: CompiledModel, n: int, rng: np.random.Generator, first_id: int = 1, id_prefix: str = "syn"
) -> dict[str, object]:
    """n synthetic intake rows with their label_<condition> columns, as raw columns."""
    return raw_columns(sample_cells(model, n, rng, first_id, id_prefix), model.kb.schema)
