"""Writing files so that readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A new empty temporary file in ``path``'s folder (so a rename onto ``path`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = temp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` whose files move into ``target`` on success.

    On an exception nothing reaches ``target`` and the temporary folder is removed.
    """
    target.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target, prefix=".staging-"))
    try:
        yield stage
        for item in sorted(stage.iterdir()):
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
