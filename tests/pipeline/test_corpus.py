"""Corpus sources: local files in every layout, TFDS datasets, local files stored as TFDS, python_docs."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from pathlib import Path

import pytest

import pipeline.corpus.files as files_module
from pipeline.corpus import (
    Corpus,
    files_corpus,
    fingerprint_files,
    python_docs_corpus,
    reading,
    store_as_tfds,
    tfds_corpus,
)
from pipeline.counts import count_tokens
from pipeline.errors import InputError
from pipeline.tokenize import Tokenizer


def counts_of(corpus: Corpus) -> dict[str, int]:
    with reading(corpus):
        return count_tokens(corpus, Tokenizer(), progress=False).counts


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("alpha beta\nbeta gamma\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("gamma delta\n")
    with bz2.open(tmp_path / "c.txt.bz2", "wt") as f:
        f.write("delta epsilon\nzeta\n")
    with lzma.open(tmp_path / "d.txt.xz", "wt") as f:
        f.write("eta\n")
    return tmp_path


def test_plain_gzip_bz2_xz_lines_and_files(mixed: Path) -> None:
    expected = {"alpha": 1, "beta": 2, "gamma": 2, "delta": 2, "epsilon": 1, "zeta": 1, "eta": 1}
    by_line = files_corpus([str(mixed / "*")])
    with reading(by_line):
        counted = count_tokens(by_line, Tokenizer(), progress=False)
    assert counted.counts == expected and counted.documents == 6
    by_file = files_corpus([str(mixed / "*")], unit="file")
    with reading(by_file):
        counted = count_tokens(by_file, Tokenizer(), progress=False)
    assert counted.counts == expected and counted.documents == 4
    assert by_file.fingerprint != by_line.fingerprint  # the same bytes cut into other documents


def test_fingerprint_follows_content_not_names_or_times(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("alpha beta\n")
    (tmp_path / "y.txt").write_text("gamma\n")
    first = fingerprint_files([tmp_path / "x.txt", tmp_path / "y.txt"])
    (tmp_path / "x.txt").rename(tmp_path / "renamed.txt")
    os.utime(tmp_path / "renamed.txt", (1, 1))
    assert fingerprint_files([tmp_path / "renamed.txt", tmp_path / "y.txt"]) == first
    with gzip.open(tmp_path / "y.txt.gz", "wt") as f:
        f.write("gamma\n")
    assert fingerprint_files([tmp_path / "renamed.txt", tmp_path / "y.txt.gz"]) == first  # decompressed content
    (tmp_path / "y.txt").write_text("gamma!\n")
    assert fingerprint_files([tmp_path / "renamed.txt", tmp_path / "y.txt"]) != first


def test_json_lines_field(tmp_path: Path) -> None:
    rows = [{"text": "json one", "id": 1}, {"text": "json two"}, {"text": None}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert counts_of(files_corpus([str(tmp_path / "a.jsonl")], field="text")) == {"json": 2, "one": 1, "two": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{oops\n', r"bad.jsonl:2: not a JSON object"),
        ('{"text": "ok"}\n{"body": "x"}\n', r"bad.jsonl:2: no field 'text'"),
        ('{"text": 3}\n', r"bad.jsonl:1: field 'text' holds int, not text"),
    ],
)
def test_bad_json_lines_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(InputError, match=message):
        counts_of(files_corpus([str(tmp_path / "bad.jsonl")], field="text"))


def test_bad_paths_and_options(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing-\*\.txt: glob matches no file"):
        files_corpus([str(tmp_path / "nothing-*.txt")])
    with pytest.raises(InputError, match=r"missing\.txt: corpus file not found"):
        files_corpus([str(tmp_path / "missing.txt")])
    with pytest.raises(InputError, match="corpus.paths: no files given"):
        files_corpus([])
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(InputError, match="corpus.unit: must be line or file, got 'page'"):
        files_corpus([str(tmp_path / "a.txt")], unit="page")


def test_undecodable_bytes_are_replaced_and_counted_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"good \xff\xfe words\nmore \xc3 text\n")
    corpus = files_corpus([str(tmp_path / "bad.txt")])
    counted = count_tokens(corpus, Tokenizer(), progress=False)
    assert counted.counts == {"good": 1, "words": 1, "more": 1, "text": 1}
    assert counted.replaced == 3


def joined_documents(corpus: Corpus, block_bytes: int) -> tuple[list[bytes], int]:
    """The documents of :meth:`Corpus.joined`, cut again at newlines, and how many it says there are."""
    texts = []
    documents = 0
    for text, n in corpus.joined(3, block_bytes):
        assert n > 0 and (text != b"" or n == 1)  # an empty text is one empty line
        texts.append(text)
        documents += n
    return (b"\n".join(texts).split(b"\n") if texts else []), documents


LINE_FILES = {
    "crlf.txt": b"a\r\nb\rc\n\n\xc3\n\xc3\xa9t\xc3\xa9\r",  # CR dropped, an undecodable byte, no final newline
    "empty.txt": b"",
    "blank.txt": b"\n\n",
    "cr_last.txt": b"x\n\r",  # the last line holds only a CR: no document
    "long.txt": "ünïcödé line longer than a block; \ufffd already\n".encode() * 3 + b"split \xe2\x82\xac",
}


@pytest.mark.parametrize("eager_files", [0, 10])  # the files through one traced flat_map, or chained
@pytest.mark.parametrize("block_bytes", [1, 2, 3, 7, 64, 1 << 20])
def test_blocks_cut_the_documents_text_lines_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int,
                                                  eager_files: int) -> None:
    monkeypatch.setattr(files_module, "EAGER_FILES", eager_files)
    for name, content in LINE_FILES.items():
        (tmp_path / name).write_bytes(content)
    corpus = files_corpus([str(tmp_path / name) for name in LINE_FILES])
    assert corpus.make_blocks is not None
    expected = list(corpus.documents().as_numpy_iterator())  # TextLineDataset, line by line
    assert expected[:8] == [b"a", b"bc", b"", "\ufffd".encode(), "été".encode(), b"", b"", b"x"]
    assert len(expected) == 8 + 4
    assert joined_documents(corpus, block_bytes) == (expected, len(expected))


def test_compressed_files_are_joined_line_by_line(mixed: Path) -> None:
    corpus = files_corpus([str(mixed / "*")])
    assert corpus.make_blocks is None
    assert joined_documents(corpus, 4) == (list(corpus.documents().as_numpy_iterator()), 6)


def test_undecodable_bytes_are_replaced_document_by_document(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"t": t}) + "\n" for t in ("ok é", "fine", "x")))
    corpus = files_corpus([str(tmp_path / "a.jsonl")], field="t")
    assert list(corpus.documents().as_numpy_iterator()) == ["ok é".encode(), b"fine", b"x"]
    (tmp_path / "b.txt").write_bytes(b"ok \xc3\xa9\n\xed\xa0\x80 surrogate\nover\xc0\xaflong\ncut \xe2\x82\n")
    corpus = files_corpus([str(tmp_path / "b.txt")])
    replaced = "\ufffd".encode()
    expected = ["ok é".encode(), replaced * 3 + b" surrogate", b"over" + replaced * 2 + b"long", b"cut " + replaced]
    assert list(corpus.documents().as_numpy_iterator()) == expected
    assert joined_documents(corpus, 5) == (expected, 4)


def test_store_as_tfds_once_then_reuse(mixed: Path, tmp_path: Path) -> None:
    corpus = files_corpus([str(mixed / "*.txt*")])
    stored = store_as_tfds(corpus, tmp_path / "tfds")
    assert stored.fingerprint == corpus.fingerprint
    assert counts_of(stored) == counts_of(corpus)
    shards = sorted((tmp_path / "tfds").rglob("*.tfrecord*"))
    assert shards
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = store_as_tfds(files_corpus([str(mixed / "*.txt*")]), tmp_path / "tfds")
    assert counts_of(again) == counts_of(corpus)
    assert [p.stat().st_mtime_ns for p in shards] == mtimes  # read, not rewritten


def test_tfds_source_reads_a_prepared_dataset_and_names_bad_input(mixed: Path, tmp_path: Path) -> None:
    stored = store_as_tfds(files_corpus([str(mixed / "a.txt")]), tmp_path / "tfds")
    name = f"embadapt_local_corpus/c{stored.fingerprint[:16]}"
    corpus = tfds_corpus(name, split="train", field="text", data_dir=str(tmp_path / "tfds"))
    assert counts_of(corpus) == {"alpha": 1, "beta": 2, "gamma": 1}
    assert corpus.sources == (f"tfds:{name}:train",)
    with pytest.raises(InputError, match="no split 'test'.*one of train"):
        tfds_corpus(name, split="test", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(InputError, match="no field 'body'.*one of text"):
        tfds_corpus(name, field="body", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(InputError, match=r"tfds:ag_news_subsett: no such TFDS dataset \(did you mean ag_news_subset"):
        tfds_corpus("ag_news_subsett", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(InputError, match=r"tfds:ag_news_subset: not prepared in .*corpus.download=true"):
        tfds_corpus("ag_news_subset", data_dir=str(tmp_path / "empty"))


def test_python_docs_is_deterministic_and_prepared_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "src" / "toypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Toy package docs."""\n')
    (package / "mod.py").write_text('"""Module doc."""\ndef f():\n    """Function   doc\n    on two lines."""\n'
                                    'def g():\n    """Module doc."""\n')
    (package / "tests").mkdir()
    (package / "tests" / "test_x.py").write_text('"""Skipped test doc."""\n')
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    first = python_docs_corpus(["toypkg", "not_installed_pkg"], cache_dir=str(tmp_path / "cache"))
    docs = [d.decode() for d in first.documents().as_numpy_iterator()]
    assert docs == ["Toy package docs.", "Module doc.", "Function doc on two lines."]  # ordered, deduplicated
    shards = sorted((tmp_path / "cache" / "tfds").rglob("*.tfrecord*"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = python_docs_corpus(["toypkg"], cache_dir=str(tmp_path / "cache"))
    assert again.fingerprint == first.fingerprint
    assert [p.stat().st_mtime_ns for p in shards] == mtimes
    with pytest.raises(InputError, match="corpus.packages: none of"):
        python_docs_corpus(["not_installed_pkg"], cache_dir=str(tmp_path / "cache"))


def test_truncated_gzip_is_named(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "big.txt.gz", "wt") as f:
        f.write("alpha beta gamma\n" * 20000)
    data = (tmp_path / "big.txt.gz").read_bytes()
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut.txt.gz: cannot read the corpus.*damaged"):
        counts_of(files_corpus([str(tmp_path / "cut.txt.gz")]))


def test_concatenated_reads_the_parts_in_order_and_raises_their_bad_input(tmp_path: Path) -> None:
    from pipeline.corpus.base import concatenated

    (tmp_path / "a.txt").write_text("alpha beta\nbeta\n")
    (tmp_path / "b.jsonl").write_text('{"text": "gamma"}\n')
    a = files_corpus([str(tmp_path / "a.txt")])
    b = files_corpus([str(tmp_path / "b.jsonl")], field="text")
    whole = concatenated([a, b], "both")
    assert [d.decode() for d in whole.documents().as_numpy_iterator()] == ["alpha beta", "beta", "gamma"]
    assert whole.name == "both" and whole.sources == (str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"))
    assert counts_of(whole) == {"alpha": 1, "beta": 2, "gamma": 1}
    assert concatenated([a, b], "again").fingerprint == whole.fingerprint  # content, not the name
    assert concatenated([b, a], "both").fingerprint != whole.fingerprint  # the order is part of it
    assert whole.fingerprint not in (a.fingerprint, b.fingerprint)

    (tmp_path / "bad.jsonl").write_text('{"text": "delta"}\n{"body": "x"}\n')
    bad = concatenated([a, files_corpus([str(tmp_path / "bad.jsonl")], field="text")], "both")
    assert not bad.errors
    with pytest.raises(InputError, match=r"bad.jsonl:2: no field 'text'"):
        counts_of(bad)  # recorded by the part's reader, raised for the whole
    assert len(bad.errors) == 1 and "bad.jsonl" in str(bad.errors[0])
    with pytest.raises(ValueError, match="at least one corpus"):
        concatenated([], "none")


def test_a_short_file_in_another_encoding_is_read_not_taken_for_binary(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_bytes("été à la plage\n".encode("latin-1"))  # 3 of 15 characters undecodable
    (tmp_path / "short.txt").write_bytes("été à\n".encode("latin-1"))  # half undecodable, but too short to tell
    corpus = files_corpus([str(tmp_path / "note.txt"), str(tmp_path / "short.txt")])
    with reading(corpus):
        counted = count_tokens(corpus, Tokenizer(), progress=False)
    assert counted.replaced == 6 and counted.counts == {"t": 2, "la": 1, "plage": 1}  # U+FFFD separates
