"""Record ids used so far in a source, and where each was first used, in memory that grows by a
few bytes per id and time that stays flat per chunk: a repeated id is rejected across the whole
source, however long.

Each new id is kept once (Arrow strings, in the order first used) with its row and a 64-bit hash
of it; the hashes are kept in sorted runs, merged as they double, so looking up a chunk costs a
binary search per run. A hash that matches is confirmed by comparing the ids themselves, so a
collision never rejects a row. A bitmap marks the hashes kept, so only the few ids whose bit is
set (the repeats, and a few percent of the new ids) are searched for: binary searches into runs
of a million hashes miss the cache at every step, and were a fifth of the time of reading and
validating a large file. The bitmap keeps at least 32 bits per id kept (from 2**20 bits, 128 kB,
up to 2**26, 8 MB, reached at two million ids), rebuilt from the hashes as it doubles, so a small
file does not pay for a large one's bitmap.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

POSITION = np.int32  # an id's place among those kept (2**31 distinct ids: no intake file is that long)
FILTER_BITS = (20, 26)  # the bitmap of hashes kept: from 2**20 bits up to 2**26
FILTER_BITS_PER_ID = 32  # the bitmap doubles (up to its largest) when it has fewer bits per id kept


def _filter_slots(hashes: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each hash's byte in a bitmap of 2**bits bits and its bit in that byte."""
    slot = hashes.view(np.uint64) & np.uint64((1 << bits) - 1)
    return (slot >> np.uint64(3)).astype(np.int64), (np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8))


def _filter_bits(ids: int) -> int:
    """The bitmap's size (log2 of its bits) for `ids` ids kept."""
    low, high = FILTER_BITS
    return min(max(low, int(ids * FILTER_BITS_PER_ID - 1).bit_length()), high)


def _hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))


def _merged(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> tuple:
    """Two sorted runs of (hashes, positions) as one, without sorting again (a merge in place of an
    argsort: the largest merges happen late in a long file, so their temporaries set its peak memory)."""
    (h1, p1), (h2, p2) = first, second
    at = np.searchsorted(h1, h2, side="right") + np.arange(len(h2))  # where each of the second goes
    from_first = np.ones(len(h1) + len(h2), dtype=bool)
    from_first[at] = False
    hashes, positions = np.empty(len(from_first), dtype=h1.dtype), np.empty(len(from_first), dtype=p1.dtype)
    hashes[at], hashes[from_first] = h2, h1
    positions[at], positions[from_first] = p2, p1
    return hashes, positions


class SeenIds:
    """Record ids used so far in a source, with the row of each first use: exact and compact.

    `ids` and `rows` are the distinct ids in the order first used, and the row of each.
    `earlier(ids, rows, places)` starts one that already knows ids first used in other sources
    (an engine reading many files): a use of one of them is a repeat, and its reason names the
    place, e.g. `repeated record_id (first used at row 6 of a.csv)`.
    """

    def __init__(self):
        self._ids: list[pa.Array] = []  # new ids of each chunk, in first-use order
        self._rows: list[np.ndarray] = []  # the row of each
        self._places: list[np.ndarray] | None = None  # where each was first used ("" for this source)
        self._starts = [0]  # position of each chunk's first id among all kept ids
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, positions of their ids)
        self._bits = FILTER_BITS[0]
        self._filter = np.zeros(1 << (self._bits - 3), dtype=np.uint8)  # a set bit: some kept hash has it

    @classmethod
    def earlier(cls, ids, rows, places) -> SeenIds:
        """Knowing distinct `ids` as first used at `rows` of the sources `places` names."""
        seen = cls()
        ids = pc.cast(ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string()), pa.string())
        seen._places = []
        seen._add(ids, np.asarray(rows, dtype=np.int64), _hashes(ids.to_pylist()), np.asarray(places, dtype=object))
        return seen

    @property
    def ids(self) -> pa.Array:
        return pa.concat_arrays(self._ids) if self._ids else pa.array([], pa.string())

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate(self._rows) if self._rows else np.empty(0, dtype=np.int64)

    def _at(self, position: int) -> tuple[int, int]:
        k = int(np.searchsorted(self._starts, position, side="right")) - 1
        return k, position - self._starts[k]

    def _earlier(self, keys: list[str], hashes: np.ndarray) -> np.ndarray:
        """The position (among all kept ids) of each key used in earlier chunks, -1 where it is new."""
        found = np.full(len(keys), -1, dtype=np.int64)
        byte, bit = _filter_slots(hashes, self._bits)
        maybe = np.flatnonzero(self._filter[byte] & bit)  # the others are surely new
        if not len(maybe):
            return found
        for run_hashes, positions in self._runs:
            lo = np.searchsorted(run_hashes, hashes[maybe], side="left")
            hit = run_hashes[np.minimum(lo, len(run_hashes) - 1)] == hashes[maybe]
            for m in np.flatnonzero(hit & (found[maybe] < 0)):
                i, at = maybe[m], int(lo[m])
                while at < len(run_hashes) and run_hashes[at] == hashes[i]:  # confirmed on the ids themselves
                    k, j = self._at(int(positions[at]))
                    if self._ids[k][j].as_py() == keys[i]:
                        found[i] = positions[at]
                        break
                    at += 1
        return found

    def _add(self, ids: pa.Array, rows: np.ndarray, hashes: np.ndarray, places: np.ndarray | None = None) -> None:
        start = self._starts[-1]
        order = np.argsort(hashes, kind="stable")
        self._runs.append((hashes[order], (start + order).astype(POSITION)))
        self._ids.append(ids)
        self._rows.append(rows)
        if self._places is not None:
            self._places.append(np.full(len(ids), "", dtype=object) if places is None else places)
        self._starts.append(start + len(ids))
        marked = [hashes]
        if (bits := _filter_bits(self._starts[-1])) > self._bits:  # a larger bitmap, from every hash kept
            self._bits, self._filter = bits, np.zeros(1 << (bits - 3), dtype=np.uint8)
            marked = [run_hashes for run_hashes, _ in self._runs]
        for kept in marked:
            np.bitwise_or.at(self._filter, *_filter_slots(kept, self._bits))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            second = self._runs.pop()
            self._runs[-1] = _merged(self._runs[-1], second)

    def first_use(self, ids, rows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(row of the first use of each id, its own row when new; where, "" for this source, or None
        when every id known was first used in this source). Records the new ones.

        `ids` are the chunk's ids as compared (trimmed text, Arrow or an array of str), `rows` their
        rows, `valid` which of them count (a blank id is never a use)."""
        first = np.asarray(rows, dtype=np.int64).copy()
        place = None if self._places is None else np.full(len(first), "", dtype=object)
        keep = np.flatnonzero(valid)
        if not len(keep):
            return first, place
        ids = pc.cast(ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids, pa.string()), pa.string())
        encoded = ids.take(pa.array(keep)).dictionary_encode()  # indices in order of first appearance
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        index = encoded.indices.to_numpy(zero_copy_only=False)
        uniques = encoded.dictionary
        _, first_at = np.unique(index, return_index=True)  # each unique id's first row in the chunk
        unique_rows = first[keep][first_at]
        keys = uniques.to_pylist()
        hashes = _hashes(keys)
        earlier = self._earlier(keys, hashes)
        new = earlier < 0
        prior = np.zeros(len(keys), dtype=np.int64)
        where_first = np.full(len(keys), "", dtype=object)
        for i in np.flatnonzero(~new):
            k, j = self._at(int(earlier[i]))
            prior[i] = self._rows[k][j]
            if place is not None:
                where_first[i] = self._places[k][j]
        first[keep] = np.where(new, unique_rows, prior)[index]
        if place is not None:
            place[keep] = where_first[index]
        if new.any():
            where = np.flatnonzero(new)
            self._add(uniques.take(pa.array(where)), unique_rows[where], hashes[where])
        return first, place
