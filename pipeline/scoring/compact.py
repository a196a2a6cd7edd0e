"""The compact scoring form of a logistic cause model: exactly what scoring needs, in one .npz.

At registration (pipeline.tracking.model_logging) a logistic CauseModel is also written in this
form beside the MLflow pyfunc, after checking that it reproduces the model's probabilities. The
batch scorer loads it with numpy alone (no MLflow, skops, scikit-learn or scipy; a model with
posterior features also loads pipeline.world.belief and the knowledge base), so a small file
scores in about the time it takes to import pandas and pyarrow.
The pyfunc stays the source of truth; `score --explain` and other families use the full model.

Every step repeats the fitted pipeline's arithmetic in the same order and on arrays of the same
layout (imputation, missing indicators, standard scaling, log1p, one-hot levels, the cubic
B-spline basis by de Boor's recursion as scipy evaluates it, yes/no products), so the features
(`features`) are bit for bit the pipeline's, and through them and one matrix product
(`predict_uncalibrated_dense`) so are the logits. Scoring (`predict_proba`) sums the same terms
column by column instead (pipeline.scoring.column_tables: no dense feature block), which moves a
probability by a few 1e-15; then Platt or temperature calibration, the causes' logistic stack and
coherence. tests/test_compact.py checks both paths, and registration refuses a form more than
1e-9 from its model.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.scoring.column_tables import ColumnTables
from pipeline.world.special import expit as _expit

FORMAT = "leg-fatigue-compact-scoring"
BLOCK_ROWS = 1024  # rows whose features are made and multiplied at once
FORMAT_VERSION = 3  # 2 added the "steps" block kind, 3 the "posterior" kind; older files read unchanged
READABLE_VERSIONS = (1, 2, 3)
KINDS = ("impute", "one_hot", "spline", "steps", "products", "posterior")


class CompactFormError(ValueError):
    """A compact scoring file that this code cannot read (another format or version, or damaged)."""


@dataclass(frozen=True)
class Block:
    """One group of feature columns, in the fitted ColumnTransformer's order."""

    kind: str  # "impute" (values, missing indicators, optional scaling), "one_hot", "spline", "steps", "products"
    # or "posterior" (the knowledge base's posterior logits, pipeline.world.belief: reads the typed frame)
    columns: tuple[str, ...]
    width: int  # how many features it makes
    log: bool = False  # log1p of the value clipped at 0 first (labs such as ferritin)
    indicators: tuple[int, ...] = ()  # impute: the columns that get a missing indicator
    scale: bool = False  # impute: standardised afterwards (values and indicators)
    categories: tuple[tuple[str, ...], ...] = ()  # one_hot: each column's levels, `blank` among them
    degree: int = 0  # spline
    pairs: tuple[tuple[str, str], ...] = ()  # products
    cuts: tuple[tuple[float, ...], ...] = ()  # steps: each column's cuts (1.0 at or above, a blank 0.0)
    settings: tuple[tuple[str, object], ...] = ()  # posterior: population, kb_sha256, iterations


@dataclass
class _Prepared:
    """A chunk's columns as the features read them (see CompactModel._columns)."""

    values: dict[str, np.ndarray]
    splines: dict[int, list[tuple[np.ndarray, np.ndarray]]]  # block -> per column (basis table, row -> table row)
    posterior: np.ndarray | None = None  # (n, conditions) the posterior block's features


def _save_text(value: dict) -> np.ndarray:
    return np.array(json.dumps(value, sort_keys=True))


class CompactModel:
    """Calibrated probabilities of the conditions and causes from a typed intake frame, numpy only."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]):
        self.spec, self.arrays = spec, arrays
        unknown = sorted({str(b.get("kind")) for b in spec["blocks"]} - set(KINDS))
        if unknown:
            raise CompactFormError(f"unknown feature block kinds {unknown}: written by a newer version?")
        self.blocks = [
            Block(
                kind=b["kind"],
                columns=tuple(b["columns"]),
                width=int(b["width"]),
                log=bool(b.get("log", False)),
                indicators=tuple(b.get("indicators", ())),
                scale=bool(b.get("scale", False)),
                categories=tuple(tuple(c) for c in b.get("categories", ())),
                degree=int(b.get("degree", 0)),
                pairs=tuple(tuple(p) for p in b.get("pairs", ())),
                cuts=tuple(tuple(float(c) for c in cuts) for cuts in b.get("cuts", ())),
                settings=tuple(sorted(b.get("settings", {}).items())),
            )
            for b in spec["blocks"]
        ]
        self.output_columns_ = list(spec["outputs"])
        self.cause_members_ = [list(m) for m in spec["cause_members"]]
        self.calibration = spec["calibration"]
        self.eps, self.cause_clip = float(spec["calibration_eps"]), float(spec["cause_clip"])
        self.n_features = sum(b.width for b in self.blocks)
        self.numeric_columns = list(
            dict.fromkeys(
                name
                for b in self.blocks
                if b.kind not in ("one_hot", "posterior")
                for name in (b.columns if b.kind != "products" else [n for p in b.pairs for n in p])
            )
        )
        self.weights = np.ascontiguousarray(arrays["weights"], dtype=np.float64)
        self.bias = np.asarray(arrays["bias"], dtype=np.float64)
        if self.weights.shape != (self.n_features, len(self.output_columns_)):
            raise CompactFormError(f"weights of shape {self.weights.shape} do not fit {self.n_features} features")
        self._tables = None  # the per-column tables of the logits, made at the first prediction
        self._posterior_block = next((b for b in self.blocks if b.kind == "posterior"), None)
        if self._posterior_block is not None:  # imported with the model (only a model with this block
            from pipeline.world.belief import knowledge_posterior  # needs it), not in the first chunk's time

            self._knowledge_posterior = knowledge_posterior

    # ------------------------------------------------------------------------------ file form

    def save(self, path: Path) -> Path:
        spec = {**self.spec, "format": FORMAT, "version": FORMAT_VERSION}
        np.savez(path, spec=_save_text(spec), **self.arrays)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> CompactModel:
        """Read a compact scoring file (no pickle: plain arrays and a JSON description)."""
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            spec = json.loads(str(arrays.pop("spec")))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise CompactFormError(f"{path}: not a compact scoring file ({err})") from None
        if spec.get("format") != FORMAT or spec.get("version") not in READABLE_VERSIONS:
            raise CompactFormError(f"{path}: format {spec.get('format')!r} version {spec.get('version')!r}")
        return cls(spec, arrays)

    # ------------------------------------------------------------------------------- features

    def _values_of(self, typed: pd.DataFrame) -> dict[str, np.ndarray]:
        """The numbers (float64, NaN blank) and each one-hot column's level positions (-1 for a level the
        encoder does not know)."""
        values = {name: typed[name].to_numpy(dtype=np.float64) for name in self.numeric_columns}
        for block in self.blocks:
            if block.kind == "one_hot":
                for name, levels in zip(block.columns, block.categories, strict=True):
                    values[name] = _level_positions(typed[name], levels)
        return values

    def _columns(self, typed: pd.DataFrame) -> _Prepared:
        """What the features read, per chunk: the numbers and level positions (`_values_of`), and each
        spline column's basis for each distinct value (a column holds a few hundred distinct values,
        mostly the imputed one)."""
        values = self._values_of(typed)
        splines = {}
        for i, block in enumerate(self.blocks):
            if block.kind == "spline":
                x, _ = self._values(i, block, values)
                tables = []
                for j in range(x.shape[1]):
                    inverse, distinct = pd.factorize(x[:, j])  # hashed, in order of appearance
                    tables.append((self._basis_table(i, block, j, np.asarray(distinct, dtype=np.float64)), inverse))
                splines[i] = tables
        return _Prepared(values, splines, self._posterior(typed))

    def _posterior(self, typed: pd.DataFrame) -> np.ndarray | None:
        """The posterior block's features (pipeline.world.belief, the fitted pipeline's function), or None."""
        block = self._posterior_block
        if block is None:
            return None
        return self._knowledge_posterior(typed, **dict(block.settings))  # it reads its columns by name

    def features(self, typed: pd.DataFrame) -> np.ndarray:
        """(n, features) float64, C order: the fitted ColumnTransformer's output, bit for bit."""
        out = np.empty((len(typed), self.n_features), dtype=np.float64)
        self._features_into(self._columns(typed), 0, len(typed), out)
        return out

    def _features_into(self, prepared: _Prepared, start: int, stop: int, out: np.ndarray) -> None:
        """The features of rows [start, stop) into `out` (stop - start rows)."""
        values = {name: column[start:stop] for name, column in prepared.values.items()}
        at = 0
        for i, block in enumerate(self.blocks):
            view = out[:, at : at + block.width]
            if block.kind == "impute":
                self._impute(i, block, values, view)
            elif block.kind == "one_hot":
                _one_hot(block, values, view)
            elif block.kind == "steps":
                _steps(block, values, view)
            elif block.kind == "spline":
                per = block.width // len(block.columns)
                for j, (table, inverse) in enumerate(prepared.splines[i]):
                    view[:, j * per : (j + 1) * per] = table[inverse[start:stop]]
            elif block.kind == "products":
                _products(block, values, view)
            elif block.kind == "posterior":
                view[:] = prepared.posterior[start:stop]
            else:  # unreachable: __init__ refuses unknown kinds
                raise CompactFormError(f"unknown feature block kind {block.kind!r}")
            at += block.width

    def _values(self, i: int, block: Block, values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The block's columns as an (n, k) float64 array, log-scaled and imputed as fitted."""
        x = np.column_stack([values[name] for name in block.columns])
        if block.log:
            x = np.log1p(np.clip(x, 0, None))
        missing = np.isnan(x)
        return np.where(missing, self.arrays[f"b{i}_fill"], x), missing

    def _impute(self, i: int, block: Block, values: dict[str, np.ndarray], view: np.ndarray) -> None:
        imputed, missing = self._values(i, block, values)
        k = len(block.columns)
        view[:, :k] = imputed
        view[:, k:] = missing[:, list(block.indicators)]
        if block.scale:
            view -= self.arrays[f"b{i}_mean"]
            view /= self.arrays[f"b{i}_scale"]

    def _basis_table(self, i: int, block: Block, j: int, x: np.ndarray) -> np.ndarray:
        """Column j's B-spline basis at each of the values x: (len(x), basis functions), constant
        beyond the knots' range (SplineTransformer with `constant` extrapolation)."""
        knots, k = self.arrays[f"b{i}_knots"][j : j + 1], block.degree
        per = knots.shape[1] - k - 1
        low, high = knots[0, k], knots[0, -k - 1]
        table = np.zeros((len(x), per))
        inside = np.flatnonzero((low <= x) & (x <= high))
        basis, first = _bspline_basis(knots, k, x[inside], np.zeros(len(inside), dtype=np.int64))
        table[inside[:, None], first[:, None] + np.arange(k + 1)] = basis
        table[x < low, :k] = self.arrays[f"b{i}_fmin"][j, :k]
        table[x > high, per - k :] = self.arrays[f"b{i}_fmax"][j, per - k :]
        return table

    # ---------------------------------------------------------------------------- probabilities

    @property
    def needs_preparing(self) -> bool:
        """Whether `prepare` does any work (a posterior block): the batch scorer then runs it a chunk ahead."""
        return self._posterior_block is not None

    def prepare(self, typed: pd.DataFrame) -> np.ndarray | None:
        """What scoring `typed` needs beyond its columns (the posterior block's features), or None;
        pass it to `predict_proba` as `prepared`."""
        return self._posterior(typed)

    def predict_uncalibrated(self, typed: pd.DataFrame, prepared: np.ndarray | None = None) -> np.ndarray:
        """The base model's probabilities, from the logits summed column by column (no dense features;
        pipeline.scoring.column_tables). `prepared`: `prepare(typed)`, if already made."""
        if self._tables is None:
            self._tables = ColumnTables(self)
        logits = self._tables.logits(self._values_of(typed), len(typed))
        posterior = self._posterior(typed) if prepared is None else prepared
        if posterior is not None:
            share = self._tables.posterior
            logits += posterior @ self.weights[share.at : share.at + share.block.width]
        return _expit(logits, out=logits)

    def predict_uncalibrated_dense(self, typed: pd.DataFrame) -> np.ndarray:
        """The same through the dense features, a block of rows at a time into one buffer (small enough
        to stay in cache), each block multiplied by the weights at once: one matrix product as the
        fitted pipeline computes it."""
        n = len(typed)
        columns = self._columns(typed)
        logits = np.empty((n, self.weights.shape[1]), dtype=np.float64)
        block = np.empty((min(n, BLOCK_ROWS), self.n_features), dtype=np.float64)
        for start in range(0, n, BLOCK_ROWS):
            rows = block[: min(BLOCK_ROWS, n - start)]
            self._features_into(columns, start, start + len(rows), rows)
            logits[start : start + len(rows)] = rows @ self.weights + self.bias
        from scipy.special import expit  # the fitted pipeline's, to the last bit (this path is for checks)

        return expit(logits)

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        if self.calibration == "none":
            return raw
        p = np.clip(raw, self.eps, 1 - self.eps)
        # log(p) - log1p(-p), then intercept + slope * logit: the same operations, in place (a chunk's
        # temporaries are a few arrays of its probabilities' size fewer)
        logit = np.log(p)
        rest = np.log1p(np.negative(p, out=p), out=p)
        logit = np.subtract(logit, rest, out=logit)
        logit = np.add(self.arrays["cal_intercept"], np.multiply(self.arrays["cal_slope"], logit, out=logit), out=logit)
        return _expit(logit, out=logit)

    def _cause_inputs(self, p: np.ndarray) -> list[np.ndarray]:
        return cause_inputs(p, self.cause_members_, self.cause_clip)

    def predict_proba(self, typed: pd.DataFrame, prepared: np.ndarray | None = None) -> np.ndarray:
        """(n, conditions + causes) calibrated probabilities, each cause held between its likeliest
        condition and the sum of its conditions (as pipeline.learning.cause_model.CauseModel)."""
        p = self._calibrated(self.predict_uncalibrated(typed, prepared))
        p = np.clip(p, 0.0, 1.0, out=p)  # p is this call's own array
        n_cond = len(self.output_columns_) - len(self.cause_members_)
        coef, intercept = self.arrays["cause_coef"], self.arrays["cause_intercept"]
        for g, (members, inputs) in enumerate(zip(self.cause_members_, self._cause_inputs(p), strict=True)):
            stacked = _expit((inputs @ coef[g : g + 1].T + intercept[g : g + 1]).reshape(-1))
            conditions = p[:, members]
            low, high = conditions.max(axis=1), np.minimum(1.0, conditions.sum(axis=1))
            p[:, n_cond + g] = np.clip(stacked, low, high)
        return p


def _level_positions(column: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """The encoder's position of each row's category (a blank is the `blank` level; -1: unknown)."""
    categorical = column.array  # its codes straight from the Categorical (`.cat.codes` builds a Series)
    known = list(categorical.categories)
    position = np.array([levels.index(c) if c in levels else -1 for c in known] + [levels.index("blank")])
    codes = categorical.codes
    return position[np.where(codes < 0, len(known), codes)]


def cause_inputs(p: np.ndarray, cause_members: list[list[int]], clip: float) -> list[np.ndarray]:
    """Per cause, the inputs of its logistic stack: the logit of its own calibrated score and of
    1 - prod(1 - p_condition) over its conditions, both clipped `clip` away from 0 and 1. `p` is
    (rows, conditions + causes); the one definition for the fitted model and the compact form."""
    n_cond = p.shape[1] - len(cause_members)
    clipped = np.clip(p, clip, 1 - clip)
    out = []
    for g, members in enumerate(cause_members):
        p_any = np.clip(1 - np.prod(1 - clipped[:, members], axis=1), clip, 1 - clip)
        own = clipped[:, n_cond + g]
        out.append(np.column_stack([np.log(own / (1 - own)), np.log(p_any / (1 - p_any))]))
    return out


def _one_hot(block: Block, values: dict[str, np.ndarray], view: np.ndarray) -> None:
    view[:] = 0.0
    start = 0
    for name, levels in zip(block.columns, block.categories, strict=True):
        at = values[name]
        rows = np.flatnonzero(at >= 0)
        view[rows, start + at[rows]] = 1.0
        start += len(levels)


def _steps(block: Block, values: dict[str, np.ndarray], view: np.ndarray) -> None:
    """0/1 steps at each column's cuts (pipeline.learning.features.threshold_steps)."""
    at = 0
    for name, cuts in zip(block.columns, block.cuts, strict=True):
        for cut in cuts:
            view[:, at] = values[name] >= cut
            at += 1


def _products(block: Block, values: dict[str, np.ndarray], view: np.ndarray) -> None:
    """Products of yes/no pairs, a blank counting as no (pipeline.learning.features.interaction_products)."""
    names = list(dict.fromkeys(name for pair in block.pairs for name in pair))
    index = {name: i for i, name in enumerate(names)}
    x = np.vstack([values[name] for name in names])  # one row per field: the gathers below copy rows
    left, right = [index[a] for a, _ in block.pairs], [index[b] for _, b in block.pairs]
    yes = x == 1.0
    if np.all(yes | (x == 0.0) | np.isnan(x)):  # as validation makes them: then 1 x 1 is the only 1
        view[:] = (yes[left] & yes[right]).T
    else:
        x = np.nan_to_num(x)
        view[:] = (x[left] * x[right]).T


def _bspline_basis(t: np.ndarray, k: int, x: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The k+1 non-zero B-spline basis values at each x, and the index of the first of them; `t` holds
    one row of knots per column, x[i] belongs to column[i] and lies within [t[k], t[-k-1]] of it.
    De Boor's recursion in the order scipy's `_deBoor_D` computes it: the values are scipy's to the
    last bit."""
    n_knots = t.shape[1]
    n_basis = n_knots - k - 1
    # t[ell] <= x < t[ell + 1] (ell = n_basis - 1 at the right end): count the inner knots at or below x
    ell = k + (x[:, None] >= t[:, k + 1 : n_basis][column]).sum(axis=1)
    flat, base = t.reshape(-1), column * n_knots + ell
    distinct = bool(np.all(np.diff(t, axis=1) > 0))  # no repeated knot: no empty interval to skip
    h = [np.ones(len(x))] + [np.zeros(len(x)) for _ in range(k)]
    for j in range(1, k + 1):
        hh = h[:j]  # the values of the previous degree (h's entries are replaced, never changed in place)
        h = [np.zeros(len(x)), *h[1:]]
        for m in range(1, j + 1):
            xb, xa = flat[base + m], flat[base + m - j]
            if distinct:
                w = hh[m - 1] / (xb - xa)
                h[m - 1] = h[m - 1] + w * (xb - x)
                h[m] = w * (x - xa)
                continue
            same = xb == xa
            w = hh[m - 1] / np.where(same, 1.0, xb - xa)
            h[m - 1] = np.where(same, h[m - 1], h[m - 1] + w * (xb - x))
            h[m] = np.where(same, 0.0, w * (x - xa))
    return np.column_stack(h), ell - k
