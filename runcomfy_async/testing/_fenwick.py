"""A Fenwick tree of marked indices: queue positions in O(log n) for the wall-clock world."""

from __future__ import annotations

__all__ = ["Fenwick"]


class Fenwick:
    """Counts of marked indices below ``i`` in O(log n); grows by doubling."""

    def __init__(self) -> None:
        self._tree = [0] * 1025
        self._marks = bytearray(1024)

    def mark(self, index: int) -> None:
        while index >= len(self._marks):
            self._grow()
        self._marks[index] = 1
        i, tree = index + 1, self._tree
        while i < len(tree):
            tree[i] += 1
            i += i & -i

    def below(self, index: int) -> int:
        i, total, tree = min(index, len(self._marks)), 0, self._tree
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def _grow(self) -> None:
        self._marks.extend(bytes(len(self._marks)))
        size = len(self._marks)
        tree = [0] * (size + 1)
        for i, mark in enumerate(self._marks, start=1):
            tree[i] += mark
            parent = i + (i & -i)
            if parent <= size:
                tree[parent] += tree[i]
        self._tree = tree
