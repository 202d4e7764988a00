"""TensorFlow Datasets as corpora: any catalog dataset by name, and local files stored once as record shards."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import tensorflow_datasets as tfds

from pipeline.corpus.base import Corpus, reading
from pipeline.corpus.python_docs import prepared_corpus
from pipeline.errors import InputError

log = logging.getLogger(__name__)

STORED_NAME = "embadapt_local_corpus"


def tfds_corpus(name: str, *, split: str = "train", field: str = "text", data_dir: str | None = None,
                download: bool = False) -> Corpus:
    """A TFDS dataset's text field as a corpus.

    Args:
        name: a catalog name, optionally with config and version (``ag_news_subset``, ``wiki40b/en``).
        split: a split or split slice (``train``, ``test[:10%]``).
        field: the text feature taken as the document.
        data_dir: where TFDS keeps prepared datasets (TFDS's default when None).
        download: download and prepare it when it is not prepared (needs the network).

    Raises:
        InputError: an unknown name, a dataset not prepared while download is off, an unknown split
            or field.
    """
    source = f"tfds:{name}"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        if name.split("/")[0] == STORED_NAME:  # not in the catalog: TFDS finds it only in its data_dir
            raise InputError(source, f"no corpus stored under this name in {data_dir or 'TFDS default data_dir'}",
                             hint="set corpus.data_dir to the <corpus.cache_dir>/tfds the files were stored in "
                                  "(corpus=files corpus.store=true)") from None
        close = difflib.get_close_matches(name.split("/")[0], tfds.list_builders(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see tfds.list_builders() for the catalog"
        raise InputError(source, "no such TFDS dataset", hint=hint) from None
    if not builder.is_prepared():
        if not download:
            raise InputError(source, f"not prepared in {builder.data_dir}",
                             hint="set corpus.download=true on a connected machine, or corpus.data_dir to where it is")
        builder.download_and_prepare()
    splits = sorted(builder.info.splits.keys())
    if split.split("[")[0] not in splits:
        raise InputError(source, f"no split {split!r}", hint=f"set corpus.split to one of {', '.join(splits)}")
    texts = sorted(k for k, v in builder.info.features.items() if isinstance(v, tfds.features.Text))
    if field not in builder.info.features:
        raise InputError(source, f"no field {field!r}",
                         hint=f"set corpus.field to one of {', '.join(texts) or '(none)'}")
    return prepared_corpus("tfds", builder, split, field, (f"{source}:{split}",))


def store_as_tfds(corpus: Corpus, data_dir: str | Path) -> Corpus:
    """Store ``corpus`` once as a TFDS dataset (config named by its fingerprint) and read it from there.

    Later runs over the same content find the prepared record shards and skip the text parsing.
    """
    config = f"c{corpus.fingerprint[:16]}"
    features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
    existing = Path(data_dir, STORED_NAME, config, "1.0.0")
    if (existing / "dataset_info.json").exists():
        builder = tfds.builder_from_directory(str(existing))
    else:
        log.info("storing %s as TFDS dataset %s/%s under %s", ", ".join(corpus.sources[:3]), STORED_NAME, config,
                 data_dir)
        documents = corpus.documents().map(lambda text: {"text": text})
        with reading(corpus):
            builder = tfds.dataset_builders.store_as_tfds_dataset(
                name=STORED_NAME, version="1.0.0", features=features, split_datasets={"train": documents},
                config=config, data_dir=str(data_dir), description=f"corpus {corpus.fingerprint}",
                disable_shuffling=True,
            )
    stored = prepared_corpus(corpus.name, builder, "train", "text", corpus.sources)
    return Corpus(corpus.name, corpus.sources, corpus.fingerprint, stored.make_documents)
