"""Target corpora: local text files or the Python-docstrings demo corpus, streamed as tf.data documents."""

from __future__ import annotations

import ast
import glob
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from pipeline.atomic import replacing
from pipeline.errors import InputError
from pipeline.formats.cache import default_cache_dir
from pipeline.formats.raw import open_binary

log = logging.getLogger(__name__)

PYTHON_DOCS_VERSION = 1  # bump when the builder's output changes, to rebuild caches
_SKIP_DIRS = frozenset({"test", "tests", "testing", "idlelib", "lib2to3", "turtledemo", "site-packages",
                        "_vendor", "vendor", "vendored", "third_party", "__pycache__"})


@dataclass(frozen=True)
class Corpus:
    """A corpus on disk, read one document per line, never loaded whole.

    Attributes:
        name: a short label (``files``, ``python_docs``).
        files: the text files, plain or gzip/bz2/xz-compressed, in reading order.
        fingerprint: sha256 over the files' contents (not names or modification times).
    """

    name: str
    files: tuple[Path, ...]
    fingerprint: str

    def documents(self) -> tf.data.Dataset:
        """The documents as a dataset of ``tf.string`` scalars, undecodable bytes replaced by U+FFFD."""
        parts = [_lines(path) for path in self.files]
        dataset = parts[0]
        for part in parts[1:]:
            dataset = dataset.concatenate(part)
        return dataset.map(
            lambda line: tf.strings.unicode_transcode(line, "UTF-8", "UTF-8", errors="replace"),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )


def _lines(path: Path) -> tf.data.Dataset:
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith((b"BZh", b"\xfd7zXZ")):
        raise InputError(path, "bz2 and xz corpora are not read yet", hint="decompress it, or gzip it")
    compression = "GZIP" if head.startswith(b"\x1f\x8b") else ""
    return tf.data.TextLineDataset(str(path), compression_type=compression)


def fingerprint_files(files: Sequence[Path]) -> str:
    """sha256 over the (decompressed) contents of ``files`` in order, each followed by a separator."""
    digest = hashlib.sha256()
    for path in files:
        with open_binary(path) as f:
            while block := f.read(1 << 20):
                digest.update(block)
        digest.update(b"\0\n")
    return digest.hexdigest()


def files_corpus(paths: Sequence[str]) -> Corpus:
    """A corpus of local files and globs (``*.txt``, ``logs/**/*.gz``), one document per line.

    Raises:
        InputError: no paths, a missing file, or a glob that matches nothing.
    """
    if not paths:
        raise InputError("corpus.paths", "no files given", hint="set corpus.paths=[a.txt,'docs/*.txt']")
    files: list[Path] = []
    for pattern in paths:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(pattern, "glob matches no file", hint="check corpus.paths")
            files.extend(Path(p) for p in matches)
        else:
            path = Path(expanded)
            if not path.is_file():
                raise InputError(path, "corpus file not found", hint="check corpus.paths")
            files.append(path)
    return Corpus("files", tuple(files), fingerprint_files(files))


def python_docs_corpus(packages: Sequence[str], cache_dir: str | None = None) -> Corpus:
    """The demo corpus: docstrings of the standard library and installed packages, one per line.

    Built offline with ``ast`` (nothing is imported), deterministic for a given environment, and
    cached under the cache directory keyed by the Python and package versions.

    Args:
        packages: ``stdlib`` and importable package names; those not installed are skipped.
        cache_dir: where the built corpus is kept (default :func:`default_cache_dir`).
    """
    roots = list(_package_roots(packages))
    if not roots:
        raise InputError("corpus.packages", f"none of {list(packages)} is installed", hint="name installed packages")
    key_text = repr((PYTHON_DOCS_VERSION, sys.version, [(name, version) for name, version, _ in roots]))
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    directory = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "corpora"
    target = directory / f"python_docs-{key}.txt"
    if not target.exists():
        documents = 0
        with replacing(target) as tmp, open(tmp, "w", encoding="utf-8") as out:
            for doc in _docstrings(roots):
                out.write(doc + "\n")
                documents += 1
        log.info("built the python_docs corpus: %d docstrings from %s -> %s", documents,
                 ", ".join(name for name, _, _ in roots), target)
    return Corpus("python_docs", (target,), fingerprint_files([target]))


def _package_roots(packages: Sequence[str]) -> Iterator[tuple[str, str, Path]]:
    for name in packages:
        if name == "stdlib":
            yield name, sys.version.split()[0], Path(sysconfig.get_paths()["stdlib"])
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            log.warning("python_docs: package %r is not installed; skipped", name)
            continue
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        yield name, version, Path(next(iter(spec.submodule_search_locations)))


def _docstrings(roots: Sequence[tuple[str, str, Path]]) -> Iterator[str]:
    seen: set[str] = set()
    for _, _, root in roots:
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    tree = ast.parse(Path(directory, name).read_bytes())
                except (SyntaxError, ValueError, OSError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                        doc = ast.get_docstring(node)
                        if doc:
                            flat = re.sub(r"\s+", " ", doc).strip()
                            if flat not in seen:
                                seen.add(flat)
                                yield flat
