"""Writing files so that readers see the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder, so that a rename onto ``path`` is atomic.

    The file is not created here, so it gets the usual permissions when written (``mkstemp``
    would leave it, and the file renamed from it, readable by its owner only).
    """
    return path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A temporary folder inside ``target`` whose files move into ``target`` on success.

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
