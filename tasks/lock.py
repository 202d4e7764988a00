"""One scheduled job at a time: an exclusive ``flock`` on a lock file that names its holder.

The kernel drops the lock when its holder dies, however it dies, so a lock left by a killed
process is never a deadlock: the next job takes it, and says whose it was.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LockedError(RuntimeError):
    """Another job holds the lock."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"])) if "started" in holder else "?"
        super().__init__(f"{path}: another retrain holds the lock (pid {holder.get('pid', '?')} on "
                         f"{holder.get('host', '?')}, since {since}); this one exits without doing anything")
        self.holder = holder


def _read(handle: Any) -> dict[str, Any]:
    handle.seek(0)
    try:
        found = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive(path: Path, what: str = "") -> Iterator[dict[str, Any]]:
    """Hold the lock at ``path`` for the block; yield what the previous holder left (empty if none).

    Raises:
        LockedError: at once, when another process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(path, _read(handle)) from None
        left = _read(handle)
        if left.get("pid") and left.get("released") is None:
            alive = left.get("host") == socket.gethostname() and _running(int(left["pid"])) \
                and int(left["pid"]) != os.getpid()
            log.warning("%s: took over a lock left by pid %s on %s (%s), which did not release it", path,
                        left.get("pid"), left.get("host"), "still running but no longer holding it" if alive
                        else "no longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "what": what}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(me))
        handle.flush()
        os.fsync(handle.fileno())
        try:
            yield left
        finally:  # a job that raised still released its lock; only a killed one leaves it unreleased
            me["released"] = time.time()
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(me))
            handle.flush()
    finally:
        handle.close()  # closing drops the flock
