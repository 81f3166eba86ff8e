"""The small linear algebra of the attribution: non-negative least squares, the inverse of a
small symmetric matrix, and ordinary least squares with t-values, all on sums of products."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Set, Tuple

from . import rules


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def nnls(gram: List[List[float]], cross: List[float]) -> List[float]:
    """``b >= 0`` minimising ``b'Gb - 2c'b``: the active-set method of Lawson and Hanson on
    the normal equations (a route joins while its gradient is positive; a route whose exact
    slope would turn negative leaves). Routes whose counts never moved (``G[i][i] == 0``)
    and routes that would make the system singular (counts in lockstep with one already in)
    stay at 0."""
    n = len(cross)
    b = [0.0] * n
    passive: List[int] = []
    barred: Set[int] = set()
    scale = max([abs(c) for c in cross] + [0.0])
    for _ in range(rules.NNLS_SWEEPS):
        gradient = [cross[i] - dot(gram[i], b) for i in range(n)]
        joining = [i for i in range(n) if i not in passive and i not in barred
                   and gram[i][i] > 0 and gradient[i] > 1e-12 * scale]
        if not joining:
            break
        passive.append(max(joining, key=lambda i: gradient[i]))
        while passive:
            inverse = invert([[gram[i][j] for j in passive] for i in passive])
            if inverse is None:
                barred.add(passive.pop())
                break
            exact = [dot(row, [cross[j] for j in passive]) for row in inverse]
            if all(v > 0 for v in exact):
                for i, v in zip(passive, exact):
                    b[i] = v
                break
            # Move towards the exact solution until the first slope reaches 0; it leaves.
            step = min(b[i] / (b[i] - v) for i, v in zip(passive, exact) if v <= 0)
            for i, v in zip(passive, exact):
                b[i] += step * (v - b[i])
            passive = [i for i in passive if b[i] > 1e-12 * (1.0 + abs(b[i]))]
            for i in range(n):
                if i not in passive:
                    b[i] = 0.0
    return b


def invert(matrix: List[List[float]]) -> Optional[List[List[float]]]:
    """The inverse of a small symmetric matrix (Gauss-Jordan), ``None`` when singular."""
    n = len(matrix)
    a = [list(row) + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) <= 1e-12 * max(1.0, abs(matrix[col][col])):
            return None
        a[col], a[pivot] = a[pivot], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for r in range(n):
            if r != col and a[r][col] != 0:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col])]
    return [row[n:] for row in a]


def ols(gram: List[List[float]], cross: List[float], yy: float, points: int,
         active: List[int]) -> Optional[Tuple[List[float], List[float], float]]:
    """Least squares on the ``active`` routes (the list is narrowed to those with positive
    slopes): their slopes, t-values and residual sum of squares (``None`` when none is
    left)."""
    active[:] = [i for i in active if gram[i][i] > 0]
    while active:
        inverse = invert([[gram[i][j] for j in active] for i in active])
        if inverse is None:
            return None  # routes whose counts moved in lockstep: no split to be had
        slopes = [dot(row, [cross[j] for j in active]) for row in inverse]
        if any(v <= 0 for v in slopes):
            active[:] = [i for i, v in zip(active, slopes) if v > 0]
            continue
        rss = max(yy - sum(v * cross[i] for v, i in zip(slopes, active)), 0.0)
        dof = points - len(active)
        t_values = []
        for k, v in enumerate(slopes):
            variance = rss / dof * inverse[k][k] if dof > 0 else math.inf
            t_values.append(v / math.sqrt(variance) if variance > 0 else
                            (math.inf if dof > 0 else 0.0))
        return slopes, t_values, rss
    return None
