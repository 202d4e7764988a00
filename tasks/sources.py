"""The configured corpus source, opened: local files (optionally stored as TFDS shards), a TFDS dataset, the demo."""

from __future__ import annotations

from pathlib import Path

from pipeline.corpus import Corpus, files_corpus, python_docs_corpus, store_as_tfds, tfds_corpus
from pipeline.formats.cache import default_cache_dir
from tasks.config import FilesCorpusConfig, PythonDocsCorpusConfig, TfdsCorpusConfig


def open_corpus(spec: FilesCorpusConfig | PythonDocsCorpusConfig | TfdsCorpusConfig) -> Corpus:
    """The configured corpus source (local files stored once as TFDS record shards with ``corpus.store``)."""
    if isinstance(spec, FilesCorpusConfig):
        corpus = files_corpus(spec.paths, unit=spec.unit, field=spec.field)
        if spec.store:
            corpus = store_as_tfds(corpus, Path(spec.cache_dir or default_cache_dir()) / "tfds")
        return corpus
    if isinstance(spec, TfdsCorpusConfig):
        return tfds_corpus(spec.name, split=spec.split, field=spec.field, data_dir=spec.data_dir,
                           download=spec.download)
    return python_docs_corpus(spec.packages, spec.cache_dir)
