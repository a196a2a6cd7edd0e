"""The compact model's logits without a dense feature matrix: a sum of one table per input column.

Every feature block but the yes/no products depends on one input column, and the logits are
linear in the features, so a column's share of all 27 logits is a function of its value alone:
its features at that value times their rows of the weights. Per chunk, each column's distinct
values are found (a yes/no field has three: 0, 1 and blank, tabulated once when the model loads;
a lab a few hundred), its table of shares is made at those values only (and kept for the next
chunks: a lab holds a few thousand values over a file), and the logits are the sum over columns
of each row's entry, one gather (`np.take`) per column. Yes/no fields, most of a form, are taken
GROUP at a time (groups fixed when the model loads): the group's 3^GROUP combinations of 0, 1
and blank summed once into a joint table, indexed by a base-3 code of the row's values. The
products of yes/no pairs are found from each form's few "yes" (`yes_pairs`) and their weight
rows summed per form.
numpy alone: scipy (sparse, whose CSR product this replaces, and special, see
pipeline.world.special) cost a scorer about 16 MB resident and 0.1 s at each start, and the
grouped gathers are quicker than the product was.

The features at each distinct value are computed by the very operations of the dense path
(pipeline.scoring.compact), so they are the fitted pipeline's bit for bit; only the order in which
the shares are added differs from one dense matrix product (the same in every chunk, whatever its
size; but a number column that holds only 0, 1 and blanks in a small chunk is read from its table
made at load, whose entries may differ from its own in the last bit), which moves a probability by
a few units of 1e-15 (tests/test_compact.py holds it to 1e-12; registration refuses a form 1e-9 away).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.world.kept_rows import KeptRows

CACHED_VALUES = 8192  # table rows kept per number column from chunk to chunk (27 outputs: 1.7 MB at most)
YES_NO = np.array([0.0, 1.0, np.nan])  # the values a yes/no field takes once validated, in table order
GROUP = 5  # yes/no columns per joint table (3^5 = 243 rows of 27 logits: 52 KB, in a core's cache)


@dataclass(frozen=True)
class _Share:
    """Column j of block i (a pipeline.scoring.compact.Block), whose features start at weight row `at`."""

    i: int
    block: object
    j: int
    at: int


class ColumnTables:
    """Logits of a pipeline.scoring.compact.CompactModel as sums of per-column tables (see the module's
    notes). This module reads the model's blocks, weights and arrays; it does not import it."""

    def __init__(self, model):
        self.model = model
        self.shares: dict[str, list[_Share]] = {}
        self.products: _Share | None = None
        self.posterior: _Share | None = None  # a function of the whole form: CompactModel adds its share
        at = 0
        for i, block in enumerate(model.blocks):
            if block.kind == "products":
                self.products = _Share(i, block, 0, at)
            elif block.kind == "posterior":
                self.posterior = _Share(i, block, 0, at)
            else:
                for j, name in enumerate(block.columns):
                    self.shares.setdefault(name, []).append(_Share(i, block, j, at))
            at += block.width
        self._joint: dict[tuple[str, ...], np.ndarray] = {}  # group of yes/no columns -> its joint table, made once
        self._known: dict[str, KeptRows] = {}  # per number column: its rows at the values met so far
        self.categorical = [n for n, s in self.shares.items() if s[0].block.kind == "one_hot"]
        self.numeric = [n for n in self.shares if n not in self.categorical]
        # tables made once: a categorical column's share per level (and an unknown level), a number's
        # share at 0, 1 and blank (used for the chunks in which it holds nothing else, as yes/no fields do)
        self.level_tables = {n: self._table(n, np.arange(-1.0, self._levels(n))) for n in self.categorical}
        self.yes_no_tables = {n: self._table(n, YES_NO) for n in self.numeric}
        # the groups of columns taken through joint tables, fixed when the model loads (so a form's terms
        # are added in the same order in every chunk): the columns with imputed values only (yes/no
        # fields; a number also has a spline, steps or a log), GROUP at a time in the model's order
        plain = [n for n in self.numeric if all(s.block.kind == "impute" and not s.block.log for s in self.shares[n])]
        self.groups = [tuple(plain[i : i + GROUP]) for i in range(0, len(plain), GROUP)]
        self._group_of = {name: group for group in self.groups for name in group}
        if self.products is not None:
            pairs = self.products.block.pairs
            self.pair_fields = list(dict.fromkeys(name for pair in pairs for name in pair))
            index = {name: k for k, name in enumerate(self.pair_fields)}
            self.left = np.array([index[a] for a, _ in pairs])
            self.right = np.array([index[b] for _, b in pairs])
            self.pair_weights = model.weights[self.products.at : self.products.at + self.products.block.width]
            # each pair of fields' product column, either way round, -1 for none (None: a pair listed twice)
            self.pair_at = np.full((len(self.pair_fields),) * 2, -1)
            self.pair_at[self.left, self.right] = self.pair_at[self.right, self.left] = np.arange(len(pairs))
            if len({frozenset(pair) for pair in pairs}) < len(pairs) or (self.left == self.right).any():
                self.pair_at = None
            # fields checked for yes/no values by `logits` (they have a table), and the others' places
            self.pair_tabled = [name for name in self.pair_fields if name in self.numeric]
            self.pair_untabled = [k for k, name in enumerate(self.pair_fields) if name not in self.numeric]

    def _levels(self, name: str) -> int:
        share = self.shares[name][0]
        return len(share.block.categories[share.j])

    # ------------------------------------------------------------------------------ tables

    def _table(self, name: str, x: np.ndarray) -> np.ndarray:
        """(len(x), outputs): the column's share of the logits at each of the values x (float64; for a
        categorical column the level positions, -1 an unknown level)."""
        table = np.zeros((len(x), self.model.weights.shape[1]))
        for share in self.shares[name]:
            table += self._block_share(share, x)
        return table

    def _block_share(self, s: _Share, x: np.ndarray) -> np.ndarray:
        """One block's features of one column at x, times their weight rows; the features as
        CompactModel._features_into makes them, value for value."""
        model, block, weights = self.model, s.block, self.model.weights
        if block.kind == "one_hot":
            first = s.at + sum(len(levels) for levels in block.categories[: s.j])
            out = np.zeros((len(x), weights.shape[1]))
            known = x >= 0
            out[known] = weights[first + x[known].astype(np.int64)]
            return out
        if block.kind == "steps":
            first = s.at + sum(len(cuts) for cuts in block.cuts[: s.j])
            steps = np.column_stack([x >= cut for cut in block.cuts[s.j]]).astype(np.float64)
            return steps @ weights[first : first + len(block.cuts[s.j])]
        value = np.log1p(np.clip(x, 0, None)) if block.log else x
        missing = np.isnan(value)
        imputed = np.where(missing, model.arrays[f"b{s.i}_fill"][s.j], value)
        if block.kind == "spline":
            per = block.width // len(block.columns)
            basis = model._basis_table(s.i, block, s.j, imputed)
            return basis @ weights[s.at + s.j * per : s.at + (s.j + 1) * per]
        # impute: the value and its missing indicator, each standardised if the block is
        features, rows = [imputed], [s.j]
        if s.j in block.indicators:
            features.append(missing.astype(np.float64))
            rows.append(len(block.columns) + block.indicators.index(s.j))
        columns = np.column_stack(features)
        if block.scale:
            columns -= model.arrays[f"b{s.i}_mean"][rows]
            columns /= model.arrays[f"b{s.i}_scale"][rows]
        return columns @ weights[[s.at + r for r in rows]]

    def _table_at(self, name: str, x: np.ndarray) -> np.ndarray:
        """`_table` at the distinct values x of a number column in one chunk, reusing the rows made for
        earlier chunks: a lab holds a few hundred values per chunk and a few thousand over a file. Up
        to CACHED_VALUES values per column are kept (the blank counting as one). New rows are made in
        batches of two or more, as a chunk's were before they were kept: numpy multiplies a single
        row through another BLAS routine, whose sums can differ in the last bit."""
        kept = self._known.get(name)
        if kept is None:
            kept = self._known[name] = KeptRows(self.model.weights.shape[1])
        table, hit = kept.look_up(x)
        if hit.all():
            return table
        new = x[~hit]
        made = self._table(name, np.repeat(new, 2))[::2] if len(new) == 1 else self._table(name, new)
        table[~hit] = made
        kept.keep(new, made, bound=CACHED_VALUES)
        return table

    # ------------------------------------------------------------------------------ logits

    def _joint_table(self, names: tuple[str, ...]) -> np.ndarray:
        """(3^len(names), outputs): the summed shares of yes/no columns at each combination of their
        table rows (0, 1, blank), the first column's row varying fastest (code sum_i 3^i row_i)."""
        table = self._joint.get(names)
        if table is None:
            combination = np.arange(3 ** len(names))
            table = np.zeros((len(combination), self.model.weights.shape[1]))
            for i, name in enumerate(names):
                table += self.yes_no_tables[name][combination // 3**i % 3]
            self._joint[names] = table
        return table

    def _group_terms(self, group: tuple[str, ...], rows: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """A group's (table, index) terms: one joint table when all its columns held yes/no values only
        in this chunk (`rows`: each such column's table rows), else each such column on its own."""
        if len(rows) < len(group):
            return [(self.yes_no_tables[name], rows[name]) for name in group if name in rows]
        code = rows[group[0]]
        for i, name in enumerate(group[1:], start=1):
            code += np.multiply(rows[name], 3**i, out=rows[name])
        return [(self._joint_table(group), code)]

    def logits(self, values: dict[str, np.ndarray], n: int) -> np.ndarray:
        """(n, outputs) logits of n rows; `values` holds the numeric columns as float64 (NaN blank)
        and the categorical ones as level positions (CompactModel._values_of)."""
        terms = [(self.level_tables[name], values[name] + 1) for name in self.categorical]  # -1: row 0
        yes_no, pending = [], {}  # pending: the table rows of the current group's yes/no columns so far
        for name in self.numeric:
            x = values[name]
            missing = np.isnan(x)
            group = self._group_of.get(name)
            if np.all((x == 0.0) | (x == 1.0) | missing):  # yes/no values only: the table made at load
                yes_no.append(name)
                rows = np.where(missing, 2.0, x).astype(np.intp)  # the column's table row
                if group is None:
                    terms.append((self.yes_no_tables[name], rows))
                else:
                    pending[name] = rows
            else:
                inverse, distinct = pd.factorize(x, use_na_sentinel=False)
                terms.append((self._table_at(name, np.asarray(distinct, dtype=np.float64)), inverse))
            if group is not None and name == group[-1]:  # the group's last column: its terms are known
                terms.extend(self._group_terms(group, pending))
                pending = {}
        logits = np.zeros((n, self.model.weights.shape[1]))
        row = np.empty_like(logits)
        for k, (table, index) in enumerate(terms):  # every index is a row of its table, by construction:
            # "clip" only spares numpy's copy of the output that "raise" makes (3x slower)
            np.take(table, index, axis=0, out=logits if k == 0 else row, mode="clip")
            if k:
                logits += row
        del terms
        if self.products is not None:
            self._add_pair_products(logits, values, set(yes_no), scratch=row)
        logits += self.model.bias
        return logits

    def _add_pair_products(
        self, logits: np.ndarray, values: dict[str, np.ndarray], yes_no: set[str], scratch: np.ndarray
    ) -> None:
        """Add the yes/no pairs' products times their weights to `logits`, form by form: a blank counts as
        no (pipeline.learning.features.interaction_products). `yes_no`: the columns found to hold only 0,
        1 and blank in this chunk (the fields without a table of their own checked here); `scratch`:
        an array of the logits' shape to overwrite."""
        fields = [values[name] for name in self.pair_fields]
        binary = all(name in yes_no for name in self.pair_tabled)
        if binary and self.pair_untabled:
            rest = [fields[k] for k in self.pair_untabled]
            binary = all(bool(np.all((v == 1.0) | (v == 0.0) | np.isnan(v))) for v in rest)
        if binary and self.pair_at is not None:  # as validation makes them: then 1 x 1 is the only 1
            rows, pairs = yes_pairs(np.column_stack([v == 1.0 for v in fields]), self.pair_at)
            products = None  # all 1
        elif binary:
            yes = np.column_stack([v == 1.0 for v in fields])
            rows, pairs = np.nonzero(yes[:, self.left] & yes[:, self.right])
            products = None
        else:
            x = np.nan_to_num(np.column_stack(fields))
            product = x[:, self.left] * x[:, self.right]
            rows, pairs = np.nonzero(product)
            products = product[rows, pairs]
        if len(rows) == 0:
            return
        # each form's sum over its pairs in order (np.nonzero and yes_pairs list them by row), then added
        # to its logits: the k-th pair of every form that has one at once, k = 0, 1, ... (a form has a few)
        count = np.bincount(rows, minlength=len(logits))
        first = np.cumsum(count) - count
        total = scratch
        total.fill(0.0)
        for k in range(int(count.max())):
            forms = np.flatnonzero(count > k)
            at = first[forms] + k
            share = self.pair_weights[pairs[at]]
            total[forms] += share if products is None else products[at, None] * share
        logits += total


PAIR_CANDIDATES = 1 << 18  # pairs of "yes" fields looked up at once (a form that says yes to all 45 has 990)


def yes_pairs(yes: np.ndarray, pair_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, pairs) where both fields of a product pair are "yes" (`yes`: rows x fields; `pair_at`:
    fields x fields, symmetric, each pair's product column or -1), by row and within a row by its
    fields' order, without the dense (rows, pairs) table: a form has about four "yes" among the pair
    fields, and few of their pairs are the model's. Every two "yes" of a form are looked up, so
    forms with many are taken a block at a time (at most PAIR_CANDIDATES pairs, as memory allows)."""
    rows, fields = np.nonzero(yes)  # by row, fields in order within a row
    count = np.bincount(rows, minlength=len(yes))
    candidates = np.cumsum(count * (count - 1) // 2)
    if len(yes) == 0 or candidates[-1] <= PAIR_CANDIDATES:
        return _yes_pairs(rows, fields, count, pair_at)
    found_rows, found_pairs, start = [], [], 0
    while start < len(yes):  # whole rows, each block at most PAIR_CANDIDATES pairs (or one row)
        done = candidates[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(candidates, done + PAIR_CANDIDATES, side="right")))
        block = slice(*np.searchsorted(rows, [start, stop]))
        r, p = _yes_pairs(rows[block], fields[block], count[start:stop], pair_at, first=start)
        found_rows.append(r)
        found_pairs.append(p)
        start = stop
    return np.concatenate(found_rows), np.concatenate(found_pairs)


def _yes_pairs(
    rows: np.ndarray, fields: np.ndarray, count: np.ndarray, pair_at: np.ndarray, first: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`yes_pairs` of the "yes" cells (rows, fields) of rows first, first + 1, ...; `count`: each of
    those rows' number of "yes"."""
    # every "yes" with each later "yes" of its row, at once
    later = np.cumsum(count)[rows - first] - np.arange(len(rows)) - 1
    left = np.repeat(np.arange(len(rows)), later)
    right = left + 1 + np.arange(len(left)) - np.repeat(np.cumsum(later) - later, later)
    pair = pair_at[fields[left], fields[right]]
    hit = pair >= 0
    return rows[left[hit]], pair[hit]
