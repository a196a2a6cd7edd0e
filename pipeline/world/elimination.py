"""Variable elimination with a backward pass: sum-products over a small factor graph, batched.

A factor is an array of shape (*cards of its scope, batch): its scope is a sorted tuple of
local variables and the batch axis comes last (contiguous, so every numpy operation runs
along it). A factor is per row ("row level", batch = rows) or per item ("item level", batch =
items, each item belonging to one row through `item_row`). Row-level factors enter an
item-level product by a gather along the batch axis.

A plan, built once per structure and cached, eliminates the variables one at a time in a
greedy order (smallest table first, item-level tables weighted up): the factors holding the
variable are multiplied pairwise, cheapest pair first, the last product summing the variable
out as it goes (an einsum). Z per item is the product of the item-level scalars left at the
end; row-level scalars are per-row constants and are dropped (they cancel in every ratio a
row's posterior takes).

Each factor is used exactly once, so the plan is a tree and Z is linear in every node. Reverse
mode (`backward`) gives dZ/d(leaf) for every item-level leaf at about twice the forward cost.
For a group of leaves replaced at once (a cause's conditions), Z' = <dZ/dN, N'> at their lowest
common ancestor N, where N' recomputes only the part of N's subtree above the changed leaves
(`group_value`). Everything is a sum of products of non-negative numbers: nothing cancels, and
each result's relative rounding error is at most `Plan.rounding_depth` units of roundoff
(plus those of the item leaves).

>>> plan = build_plan((2,), ((0,),), ((0,), ()), ())
>>> prior = np.array([[0.25], [0.75]])  # one row, one variable with two values
>>> leaves = [prior, np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 6.0])]  # two items
>>> values = forward(plan, leaves, np.array([0, 0]))
>>> item_product(plan, values, 2).tolist()  # (0.25 * 1 + 0.75 * 3) * 5, (0.25 * 2 + 0.75 * 4) * 6
[12.5, 21.0]
>>> backward(plan, values, np.array([0, 0]))[0][1].tolist()  # dZ/d(item leaf 0) = prior * (5, 6)
[[1.25, 1.5], [3.75, 4.5]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ITEM_WEIGHT = 8  # plan as if each row had this many items: item-level tables cost that much more
BATCH = 51  # einsum label of the batch axis (variables are labelled 0..50)


@dataclass(frozen=True)
class Plan:
    cards: tuple[int, ...]
    scopes: tuple[tuple[int, ...], ...]  # every node: row leaves, item leaves, then op results
    item: tuple[bool, ...]
    ops: tuple[tuple[int, int, int], ...]  # (a, b, v): a * b summed over v (v = -2: no sum); b = -1: a alone
    roots: tuple[int, ...]  # item-level scalar nodes: Z is their product
    n_row_leaves: int
    n_leaves: int
    lca: tuple[int, ...]  # per group of item leaves: their lowest common ancestor (-1: none)
    item_entries: int  # table entries per item over all item-level nodes (memory per item)
    rounding_depth: int  # roundings on any path of the forward or backward pass (exact leaves)

    def item_leaf(self, i: int) -> int:
        return self.n_row_leaves + i


def _size(cards, scope) -> int:
    return math.prod(cards[v] for v in scope)


@lru_cache(maxsize=512)
def build_plan(cards: tuple[int, ...], row_scopes: tuple, item_scopes: tuple, groups: tuple) -> Plan:
    """Greedy elimination order and pairwise products for factors with these scopes; `groups`
    are tuples of item-leaf indices whose lowest common ancestor the plan records."""
    if len(cards) >= BATCH:
        raise ValueError(f"at most {BATCH} variables")
    scopes: list[tuple[int, ...]] = [tuple(sorted(s)) for s in (*row_scopes, *item_scopes)]
    item = [False] * len(row_scopes) + [True] * len(item_scopes)
    n_leaves = len(scopes)
    ops: list[tuple[int, int, int]] = []

    def weight(nodes) -> int:
        union = set().union(*(scopes[f] for f in nodes))
        return _size(cards, union) * (ITEM_WEIGHT if any(item[f] for f in nodes) else 1)

    def new(scope, is_item: bool, op) -> int:
        scopes.append(tuple(sorted(scope)))
        item.append(is_item)
        ops.append(op)
        return len(scopes) - 1

    alive = list(range(n_leaves))
    remaining = sorted({v for s in scopes for v in s})
    while remaining:
        # the variable whose bucket makes the smallest table; ties: fewest neighbours
        buckets = {v: [f for f in alive if v in scopes[f]] for v in remaining}
        v = min(remaining, key=lambda v: (weight(buckets[v]), len(set().union(*(scopes[f] for f in buckets[v]))), v))
        remaining.remove(v)
        bucket = buckets[v]
        alive = [f for f in alive if v not in scopes[f]]
        while len(bucket) > 2:
            pairs = [(weight((a, b)), i, j) for i, a in enumerate(bucket) for j, b in enumerate(bucket) if i < j]
            _, i, j = min(pairs)
            a, b = bucket[i], bucket[j]
            prod = new(set(scopes[a]) | set(scopes[b]), item[a] or item[b], (a, b, -2))
            bucket = [f for k, f in enumerate(bucket) if k not in (i, j)] + [prod]
        a, b = (*bucket, -1) if len(bucket) == 1 else bucket
        union = set(scopes[a]) | (set(scopes[b]) if b >= 0 else set())
        alive.append(new(union - {v}, item[a] or (b >= 0 and item[b]), (a, b, v)))
    roots = tuple(f for f in alive if item[f])

    parent = {}
    for k, (a, b, _) in enumerate(ops):
        parent[a] = parent[b] = n_leaves + k

    def ancestors(x) -> list[int]:
        out = [x]
        while x in parent:
            x = parent[x]
            out.append(x)
        return out

    n_row_leaves = len(row_scopes)
    lca = []
    for group in groups:
        common = set.intersection(*(set(ancestors(n_row_leaves + i)) for i in group))
        lca.append(min(common) if common else -1)
    item_entries = sum(_size(cards, s) for s, it in zip(scopes, item, strict=True) if it)
    depth = _rounding_depth(cards, scopes, item, ops, roots, n_leaves, lca)
    return Plan(
        cards, tuple(scopes), tuple(item), tuple(ops), roots, n_row_leaves, n_leaves, tuple(lca), item_entries, depth
    )


def _rounding_depth(cards, scopes, item, ops, roots, n_leaves, lca) -> int:
    """Most roundings on any path to a result (first order): a product adds its operands'
    counts and one; a sum of n terms adds n - 1. Leaves count as exact: each item leaf appears
    once in every result, so a caller whose item leaves carry r roundings adds r per item leaf."""
    fwd = [0] * n_leaves
    for a, b, v in ops:
        terms = cards[v] if v >= 0 else 1
        fwd.append(fwd[a] + (fwd[b] + 1 if b >= 0 else 0) + terms - 1)
    back = {r: sum(fwd[s] + 1 for s in roots if s != r) for r in roots}
    for k in reversed(range(len(ops))):
        a, b, v = ops[k]
        node = n_leaves + k
        if node not in back:
            continue
        for x, y in ((a, b), (b, a)) if b >= 0 else ((a, -1),):
            if y < 0:
                back[x] = back[node]
            elif item[x]:
                summed = (set(scopes[node]) | set(scopes[y])) - set(scopes[x])
                back[x] = back[node] + fwd[y] + _size(cards, summed)
    results = [sum(fwd[r] + 1 for r in roots)]
    results += [back[x] + fwd[x] + _size(cards, scopes[x]) + 2 for x in range(n_leaves) if item[x] and x in back]
    results += [back[t] + fwd[t] + _size(cards, scopes[t]) + 1 for t in lca if t >= 0]
    return max(results) + 8


def _labels(plan: Plan, node: int) -> list[int]:
    return [*plan.scopes[node], BATCH]


def _at_items(plan: Plan, node: int, x: np.ndarray, target: int, item_row: np.ndarray) -> np.ndarray:
    """x (node's value) gathered to items when the target node is item-level and x is not."""
    return np.take(x, item_row, axis=-1) if plan.item[target] and not plan.item[node] else x


def _run(plan: Plan, k: int, va: np.ndarray, vb: np.ndarray | None, item_row: np.ndarray) -> np.ndarray:
    a, b, v = plan.ops[k]
    node = plan.n_leaves + k
    va = _at_items(plan, a, va, node, item_row)
    if b == -1:
        return va.sum(axis=plan.scopes[a].index(v))
    vb = _at_items(plan, b, vb, node, item_row)
    if v == -2:  # a plain product: broadcast each operand into the result's axes
        out = plan.scopes[node]
        ea = va.reshape([plan.cards[u] if u in plan.scopes[a] else 1 for u in out] + [va.shape[-1]])
        eb = vb.reshape([plan.cards[u] if u in plan.scopes[b] else 1 for u in out] + [vb.shape[-1]])
        return ea * eb
    return np.einsum(va, _labels(plan, a), vb, _labels(plan, b), _labels(plan, node))


def forward(plan: Plan, leaves: list[np.ndarray], item_row: np.ndarray) -> list[np.ndarray]:
    """Values of every node: leaves (row leaves then item leaves), then each op's result."""
    values = list(leaves) + [None] * len(plan.ops)
    for k, (a, b, _) in enumerate(plan.ops):
        values[plan.n_leaves + k] = _run(plan, k, values[a], values[b] if b >= 0 else None, item_row)
    return values


def item_product(plan: Plan, values, n_items: int, skip: int = -1, dtype=float) -> np.ndarray:
    """Z per item: the product of the item-level scalars (but `skip`)."""
    z = None
    for r in plan.roots:
        if r != skip:
            z = values[r] if z is None else z * values[r]
    return np.ones(n_items, dtype=dtype) if z is None else z


def backward(plan: Plan, values, item_row: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """dZ/d(node) per item for every item-level leaf, and for the groups' common ancestors."""
    grads: dict[int, np.ndarray] = {}
    kept = {}
    for r in plan.roots:
        grads[r] = item_product(plan, values, len(item_row), skip=r, dtype=values[r].dtype)
    keep = set(plan.lca)
    for k in reversed(range(len(plan.ops))):
        node = plan.n_leaves + k
        g = grads.pop(node, None)
        if g is None:
            continue
        if node in keep:
            kept[node] = g
        a, b, v = plan.ops[k]
        if b == -1:
            pos = plan.scopes[a].index(v)
            grads[a] = np.broadcast_to(np.expand_dims(g, pos), values[a].shape[:-1] + g.shape[-1:])
            continue
        for x, y in ((a, b), (b, a)):
            if plan.item[x]:
                vy = _at_items(plan, y, values[y], node, item_row)
                grads[x] = np.einsum(g, _labels(plan, node), vy, _labels(plan, y), _labels(plan, x))
    leaves = {i: grads[i] for i in range(plan.n_row_leaves, plan.n_leaves)}
    return leaves, kept


def group_value(plan: Plan, values, kept, group: int, changed: dict[int, np.ndarray], item_row) -> np.ndarray:
    """Z per item with a group's leaves replaced by `changed`: <dZ/dN, N'> at their common ancestor N."""
    top = plan.lca[group]
    new = dict(changed)
    for k, (a, b, _) in enumerate(plan.ops[: top - plan.n_leaves + 1 if top >= 0 else len(plan.ops)]):
        if a not in new and b not in new:
            continue
        va = new.pop(a) if a in new else values[a]
        vb = (new.pop(b) if b in new else values[b]) if b >= 0 else None
        new[plan.n_leaves + k] = _run(plan, k, va, vb, item_row)
    if top < 0:
        return item_product(plan, [new.get(i, v) for i, v in enumerate(values)], len(item_row))
    return np.einsum(kept[top], _labels(plan, top), new[top], _labels(plan, top), [BATCH])
