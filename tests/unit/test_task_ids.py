"""Task ids have the hosted interface's shape and a suffix drawn evenly from its alphabet."""

from __future__ import annotations

import collections
import string

from qwenedit.domain.task import is_task_id, new_task_id


def test_ids_have_the_interface_shape_and_do_not_repeat() -> None:
    ids = [new_task_id(1757156493) for _ in range(5000)]
    assert all(is_task_id(task_id) for task_id in ids)
    assert all(task_id.startswith("task-unified-1757156493-") for task_id in ids)
    assert len(set(ids)) == len(ids)


def test_every_character_of_the_alphabet_appears_about_as_often() -> None:
    counts = collections.Counter(
        char for _ in range(9000) for char in new_task_id(1).rsplit("-", 1)[1]
    )
    alphabet = string.ascii_lowercase + string.digits
    assert set(counts) == set(alphabet)
    expected = 9000 * 8 / len(alphabet)  # 2000 each
    assert all(abs(count - expected) < 0.15 * expected for count in counts.values())
