"""The demo corpus: docstrings of the standard library and installed packages, as a TFDS dataset of our own.

Built offline with ``ast`` (nothing is imported), deterministic for a given environment: the
builder config is named by a hash of the Python and package versions, so another environment
builds its own dataset and the same environment reads the prepared record shards.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from pipeline.corpus.base import Corpus
from pipeline.errors import InputError
from pipeline.formats.cache import default_cache_dir

log = logging.getLogger(__name__)

_SKIP_DIRS = frozenset({"test", "tests", "testing", "idlelib", "lib2to3", "turtledemo", "site-packages",
                        "_vendor", "vendor", "vendored", "third_party", "__pycache__"})


@dataclasses.dataclass
class PythonDocsConfig(tfds.core.BuilderConfig):
    """Which packages' docstrings (``stdlib`` for the standard library), and their versions."""

    packages: tuple[tuple[str, str, str], ...] = ()  # (name, version, source folder)


class EmbadaptPythonDocs(tfds.core.GeneratorBasedBuilder):
    """Docstrings of modules, classes and functions, one example each, deduplicated, in file order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Docstrings of the standard library and installed packages, by ast."}
    disable_shuffling = True  # keep the natural order: documents stay deterministic and readable

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict[str, str]]]]:
        config = self.builder_config
        assert isinstance(config, PythonDocsConfig)
        return {"train": self._generate_examples(config.packages)}

    def _generate_examples(self, packages: Sequence[tuple[str, str, str]]) -> Iterator[tuple[int, dict[str, str]]]:
        for number, doc in enumerate(_docstrings([Path(folder) for _, _, folder in packages])):
            yield number, {"text": doc}


def python_docs_corpus(packages: Sequence[str], cache_dir: str | None = None) -> Corpus:
    """The demo corpus, prepared once per environment under ``<cache>/tfds``.

    Args:
        packages: ``stdlib`` and importable package names; those not installed are skipped.
        cache_dir: the cache directory (default :func:`default_cache_dir`).

    Raises:
        InputError: none of the packages is installed.
    """
    roots = tuple(_package_roots(packages))
    if not roots:
        raise InputError("corpus.packages", f"none of {list(packages)} is installed", hint="name installed packages")
    key = hashlib.sha256(repr((sys.version, [(n, v) for n, v, _ in roots])).encode()).hexdigest()[:16]
    config = PythonDocsConfig(name=f"env_{key}", description=", ".join(f"{n} {v}" for n, v, _ in roots),
                              packages=roots)
    data_dir = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "tfds"
    builder = EmbadaptPythonDocs(config=config, data_dir=str(data_dir))
    if not builder.is_prepared():
        log.info("building the python_docs corpus from %s into %s", config.description, data_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return prepared_corpus("python_docs", builder, "train", "text", (f"python_docs:{config.description}",))


def prepared_corpus(name: str, builder: tfds.core.DatasetBuilder, split: str, field: str,
                    sources: tuple[str, ...]) -> Corpus:
    """A corpus over a prepared TFDS split; fingerprinted by the bytes of its record shards."""
    digest = hashlib.sha256(f"split={split};field={field}".encode())
    base = split.split("[")[0]
    for shard in sorted(Path(str(builder.data_dir)).glob(f"*-{base}.*")):
        with open(shard, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)

    def make_documents() -> Any:
        return builder.as_dataset(split=split, shuffle_files=False).map(lambda example: example[field])

    return Corpus(name, sources, digest.hexdigest(), make_documents)


def _package_roots(packages: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    for name in packages:
        if name == "stdlib":
            yield name, sys.version.split()[0], sysconfig.get_paths()["stdlib"]
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            log.warning("python_docs: package %r is not installed; skipped", name)
            continue
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        yield name, version, str(next(iter(spec.submodule_search_locations)))


def _docstrings(roots: Sequence[Path]) -> Iterator[str]:
    seen: set[str] = set()
    for root in roots:
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
