"""The small linear algebra of the attribution: non-negative least squares, the inverse of a
small symmetric matrix, and ordinary least squares with t-values, all on sums of products."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

_SWEEPS = 200


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def nnls(gram: List[List[float]], cross: List[float]) -> List[float]:
    """``b >= 0`` minimising ``b'Gb - 2c'b`` (cyclic coordinate descent, then the exact
    least-squares solution on the positive set)."""
    n = len(cross)
    b = [0.0] * n
    for _ in range(_SWEEPS):
        change = 0.0
        for i in range(n):
            if gram[i][i] <= 0:
                continue
            rest = sum(gram[i][j] * b[j] for j in range(n) if j != i)
            new = max(0.0, (cross[i] - rest) / gram[i][i])
            change = max(change, abs(new - b[i]))
            b[i] = new
        if change <= 1e-9 * (1.0 + max(b)):
            break
    active = [i for i in range(n) if b[i] > 0]
    while active:
        inverse = invert([[gram[i][j] for j in active] for i in active])
        if inverse is None:
            break
        exact = [dot(row, [cross[j] for j in active]) for row in inverse]
        if all(v > 0 for v in exact):
            for i, v in zip(active, exact):
                b[i] = v
            break
        active = [i for i, v in zip(active, exact) if v > 0]
        for i in range(n):
            if i not in active:
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
         active: List[int]) -> Optional[tuple]:
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
