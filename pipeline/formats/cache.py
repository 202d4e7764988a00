"""The parse cache: a parsed text table kept as ``.npy`` + tokens, so the next load is a memory map."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.atomic import replacing
from pipeline.formats.npy import read_vocab, write_vocab
from pipeline.formats.raw import RawRows

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$EMBADAPT_CACHE``, else ``$XDG_CACHE_HOME/embadapt``, else ``~/.cache/embadapt``."""
    if os.environ.get("EMBADAPT_CACHE"):
        return Path(os.environ["EMBADAPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "embadapt"


def cache_key(path: Path, **options: object) -> str:
    """A key from the file's absolute path, size and modification time, and the parse options."""
    stat = path.stat()
    text = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, options], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ParseCache:
    """Parsed tables under ``<dir>/tables/<key>.{npy,tokens.txt,json}``, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "tables"

    def load(self, key: str) -> tuple[RawRows, dict[str, object]] | None:
        """The cached rows (memory-mapped) and their metadata, or None on a miss."""
        meta_path = self.directory / f"{key}.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            matrix = np.load(self.directory / f"{key}.npy", mmap_mode="r", allow_pickle=False)
            tokens = read_vocab(self.directory / f"{key}.tokens.txt", matrix.shape[0])
        except (OSError, ValueError) as err:
            log.warning("ignoring a damaged cache entry %s: %s", key, err)
            return None
        rows = RawRows(tokens, matrix, first_line=meta.get("first_line"),
                       replaced=int(meta.get("replaced", 0)))
        return rows, meta

    def store(self, key: str, rows: RawRows, meta: dict[str, object]) -> None:
        """Write an entry; the metadata file, written last, marks it complete."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_atomic(f"{key}.npy", lambda p: _save_npy(p, rows.matrix))
            self._write_atomic(f"{key}.tokens.txt", lambda p: write_vocab(p, rows.tokens))
            meta = {**meta, "first_line": rows.first_line, "replaced": rows.replaced}
            self._write_atomic(f"{key}.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
        except (OSError, ValueError) as err:  # a cache is an optimisation: never fail a load over it
            log.warning("could not cache the parsed table in %s: %s", self.directory, err)

    def update_meta(self, key: str, meta: dict[str, object]) -> None:
        """Rewrite an entry's metadata (for example once its file's sha256 was verified)."""
        try:
            self._write_atomic(f"{key}.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
        except OSError as err:  # as in store: a read-only cache must not fail a load
            log.warning("could not update the cache entry %s in %s: %s", key, self.directory, err)

    def _write_atomic(self, name: str, write: Callable[[Path], object]) -> None:
        with replacing(self.directory / name) as tmp:
            write(tmp)


def _save_npy(path: Path, matrix: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to a temporary name
        np.save(handle, np.asarray(matrix), allow_pickle=False)
