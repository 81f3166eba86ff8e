"""Memory that is resident at once, whatever the allocator did before."""

from __future__ import annotations

import mmap


def touched(size: int) -> mmap.mmap:
    """``size`` bytes of anonymous memory, every page written: RSS grows by that much (a
    ``bytes`` of the same size may reuse pages glibc kept after an earlier test freed a large
    block, once its mmap threshold has risen past that size). ``close()`` gives them back."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block
