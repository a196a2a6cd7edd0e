"""Record ids used so far in a source, and where each was first used, in memory that grows by a
few bytes per id and time that stays flat per chunk: a repeated id is rejected across the whole
source, however long.

Each new id is kept once (Arrow strings, in the order first seen) with its row and a 64-bit hash
of it; the hashes are kept in sorted runs, merged as they double, so looking up a chunk costs a
binary search per run. A hash that matches is confirmed by comparing the ids themselves, so a
collision never rejects a row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


class SeenIds:
    """Record ids used so far in a file, with the row of each first use: exact and compact."""

    def __init__(self):
        self._ids: list[pa.Array] = []  # new ids of each chunk, in first-use order
        self._starts = [0]  # position of each chunk's first id among all kept ids
        self._rows: list[np.ndarray] = []  # the row of each kept id
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, positions of their ids)

    def _id_at(self, position: int) -> str:
        k = int(np.searchsorted(self._starts, position, side="right")) - 1
        return self._ids[k][position - self._starts[k]].as_py()

    def _row_at(self, position: int) -> int:
        k = int(np.searchsorted(self._starts, position, side="right")) - 1
        return int(self._rows[k][position - self._starts[k]])

    def _earlier(self, keys: list[str], hashes: np.ndarray) -> np.ndarray:
        """The first row of each key in earlier chunks, 0 where it is new."""
        found = np.zeros(len(keys), dtype=np.int64)
        for run_hashes, positions in self._runs:
            lo = np.searchsorted(run_hashes, hashes, side="left")
            hit = run_hashes[np.minimum(lo, len(run_hashes) - 1)] == hashes
            for i in np.flatnonzero(hit & (found == 0)):
                at = int(lo[i])
                while at < len(run_hashes) and run_hashes[at] == hashes[i]:  # confirmed on the ids themselves
                    if self._id_at(int(positions[at])) == keys[i]:
                        found[i] = self._row_at(int(positions[at]))
                        break
                    at += 1
        return found

    def _add(self, ids: pa.Array, rows: np.ndarray, hashes: np.ndarray) -> None:
        start = self._starts[-1]
        order = np.argsort(hashes, kind="stable")
        self._runs.append((hashes[order], start + order))
        self._ids.append(ids)
        self._rows.append(rows)
        self._starts.append(start + len(ids))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (h1, p1), (h2, p2) = self._runs[-2], self._runs.pop()
            merged = np.concatenate([h1, h2])
            order = np.argsort(merged, kind="stable")
            self._runs[-1] = (merged[order], np.concatenate([p1, p2])[order])

    def first_use(self, ids: pa.Array, rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Row of the first use of each id (its own row when new); records the new ones.

        `ids` are the chunk's ids as compared (trimmed text), `rows` their rows, `valid` which of
        them count (a blank id is never a use)."""
        first = np.asarray(rows, dtype=np.int64).copy()
        keep = np.flatnonzero(valid)
        if not len(keep):
            return first
        chunk = pc.cast(ids, pa.string()).take(pa.array(keep))
        encoded = chunk.dictionary_encode()  # indices in order of first appearance in the chunk
        index = encoded.indices.to_numpy(zero_copy_only=False)
        uniques = encoded.dictionary
        _, first_at = np.unique(index, return_index=True)  # each unique id's first row in the chunk
        unique_rows = first[keep][first_at]
        keys = uniques.to_pylist()
        hashes = _hashes(keys)
        earlier = self._earlier(keys, hashes)
        new = earlier == 0
        first[keep] = np.where(new, unique_rows, earlier)[index]
        if new.any():
            where = np.flatnonzero(new)
            self._add(uniques.take(pa.array(where)), unique_rows[where], hashes[where])
        return first
