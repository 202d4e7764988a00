"""Python's cyclic garbage collector during a long run: the objects that exist before it are set aside."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects that exist on entry, until the exit.

    With TensorFlow, Keras and MLflow imported, a process holds over a million objects that live
    as long as it does, and every full collection walks all of them: 0.3 s each, in about every other
    adapt on the real-data kit. :func:`gc.freeze` sets them aside, so a collection walks only what the
    run made; :func:`gc.unfreeze` hands them back on exit, so a long-lived process collects them as
    before. Nested uses leave the outermost one to hand them back.
    """
    if gc.get_freeze_count():  # an outer use (or the caller) froze them and will hand them back
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
