"""Work on a few threads whose results are used in order: for steps that release the GIL (Arrow, TensorFlow)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], threads: int, name: str) -> Iterator[Result]:
    """``function`` of each of ``items``, computed on ``threads`` threads and yielded in the order of ``items``.

    At most ``threads + 1`` items are submitted and not yet yielded, so memory stays bounded however
    many items there are. An exception in ``function`` is raised where its result would be yielded;
    leaving the iteration early waits for the items already submitted.
    """
    pending: collections.deque[Future[Result]] = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
