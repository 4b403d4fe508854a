"""The compact id set: numbers in a bitmap, other ids in a set, one behaviour."""

from __future__ import annotations

import random
import tracemalloc

from runner.idset import MAX_BITMAP_ID, IdSet


def test_behaves_like_a_set_of_strings():
    """Random adds and discards of mixed ids agree with a plain set at every step."""
    rng = random.Random(7)
    pool = [str(n) for n in range(300)] + ["07", "+7", "7.0", "a", "q-1", "٣", "", str(MAX_BITMAP_ID + 1), "0"]
    ids, plain = IdSet(), set()
    for _ in range(3000):
        id_ = rng.choice(pool)
        if rng.random() < 0.6:
            ids.add(id_)
            plain.add(id_)
        else:
            ids.discard(id_)
            plain.discard(id_)
        assert len(ids) == len(plain)
    assert all((id_ in ids) == (id_ in plain) for id_ in pool)


def test_leading_zeros_and_non_ascii_digits_are_distinct_ids():
    """"7", "07" and the Arabic-Indic digit are three different ids."""
    ids = IdSet()
    ids.add("7")
    assert "07" not in ids and "\u0667" not in ids and 7 not in ids
    ids.add("07")
    assert len(ids) == 2


def test_line_number_ids_cost_bits_not_objects():
    """100,000 line-number ids take well under 100 kB (a set of strings takes about 10 MB)."""
    tracemalloc.start()
    ids = IdSet()
    for n in range(1, 100_001):
        ids.add(str(n))
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ids) == 100_000 and "100000" in ids and "100001" not in ids
    assert size < 100_000
