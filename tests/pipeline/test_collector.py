"""pipeline.collector: the garbage collector leaves older objects alone during a run, and gets them back after."""

from __future__ import annotations

import gc
import weakref

import pytest

from pipeline.collector import existing_objects_frozen


class Node:
    """A reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def _cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


def test_older_cycles_wait_for_the_exit_and_new_ones_are_collected_inside() -> None:
    assert gc.get_freeze_count() == 0  # nothing else froze objects in the test process
    older = Node()
    older_ref = weakref.ref(older)
    with existing_objects_frozen():
        assert gc.get_freeze_count() > 0
        del older
        gc.collect()
        assert older_ref() is not None  # set aside: not walked, not freed
        newer = _cycle()
        gc.collect()
        assert newer() is None  # made inside the run: collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert older_ref() is None  # handed back: collected as before


def test_nested_uses_leave_the_outermost_to_hand_them_back() -> None:
    with existing_objects_frozen():
        frozen = gc.get_freeze_count()
        with existing_objects_frozen():
            assert gc.get_freeze_count() == frozen
        assert frozen > 0 and gc.get_freeze_count() == frozen  # the inner exit handed nothing back
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_hands_them_back() -> None:
    with pytest.raises(RuntimeError, match="stage failed"), existing_objects_frozen():
        raise RuntimeError("stage failed")
    assert gc.get_freeze_count() == 0
