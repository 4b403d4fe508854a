"""A set of record ids that stays small for the common case: ids that are line numbers.

A batch remembers every id it has met (to catch duplicates) and every id the
output file already holds (to resume). Most ids are line numbers, the default,
and a Python set of 100,000 strings costs about 10 MB; a bitmap of 100,000
numbers costs 12.5 kB, so the parent's memory does not grow with the input.
Ids that are not plain decimal numbers (or are very large) go to an ordinary set.
"""

from __future__ import annotations

MAX_BITMAP_ID = 50_000_000
"""Numeric ids up to this go to the bitmap (6.25 MB at most); larger ones to the set."""


class IdSet:
    """``add``, ``discard``, ``in`` and ``len`` over string ids."""

    __slots__ = ("_bits", "_others", "_count_bits")

    def __init__(self) -> None:
        self._bits = bytearray()
        self._others: set[str] = set()
        self._count_bits = 0

    @staticmethod
    def _number(id_: str) -> int | None:
        """The id as a bitmap index when it is canonical decimal ("7", not "07", "+7" or "7.0")."""
        if id_.isascii() and id_.isdigit() and (id_ == "0" or id_[0] != "0") and len(id_) <= 8:
            n = int(id_)
            if n <= MAX_BITMAP_ID:
                return n
        return None

    def add(self, id_: str) -> None:
        n = self._number(id_)
        if n is None:
            self._others.add(id_)
            return
        byte, bit = divmod(n, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits) // 2)))
        if not self._bits[byte] & (1 << bit):
            self._bits[byte] |= 1 << bit
            self._count_bits += 1

    def discard(self, id_: str) -> None:
        n = self._number(id_)
        if n is None:
            self._others.discard(id_)
            return
        byte, bit = divmod(n, 8)
        if byte < len(self._bits) and self._bits[byte] & (1 << bit):
            self._bits[byte] &= ~(1 << bit) & 0xFF
            self._count_bits -= 1

    def __contains__(self, id_: object) -> bool:
        if not isinstance(id_, str):
            return False
        n = self._number(id_)
        if n is None:
            return id_ in self._others
        byte, bit = divmod(n, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))

    def __len__(self) -> int:
        return self._count_bits + len(self._others)

    def __bool__(self) -> bool:
        return len(self) > 0
