"""Target corpora as streams of documents: local files, TFDS datasets, and the python_docs demo corpus.

Every source yields a :class:`Corpus`, whose :meth:`Corpus.documents` is a ``tf.data`` pipeline:
memory does not grow with the corpus.
"""

from __future__ import annotations

from pipeline.corpus.base import Corpus, reading
from pipeline.corpus.files import files_corpus, fingerprint_files
from pipeline.corpus.python_docs import python_docs_corpus
from pipeline.corpus.tfds_source import store_as_tfds, tfds_corpus

__all__ = ["Corpus", "reading", "files_corpus", "fingerprint_files", "python_docs_corpus", "store_as_tfds",
           "tfds_corpus"]
