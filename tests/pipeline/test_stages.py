"""The stages after loading: tokenize, count, choose, induce, append, check, neighbours, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from planted import CLUSTERS, planted_table, write_planted

from pipeline.adapted import AdaptedTable
from pipeline.cooccurrence import _pair_keys, context_counts, key_counts, key_dtype, sparse_counts, window_offsets
from pipeline.corpus import files_corpus
from pipeline.counts import count_tokens
from pipeline.errors import InputError
from pipeline.export import build_manifest, export_table
from pipeline.formats import LoadOptions, load_table
from pipeline.integrity import check_integrity
from pipeline.neighbours import nearest
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer, TokenizerOptions
from pipeline.vocab import VocabOptions, select_new_tokens


def test_tokenizer_keeps_inner_characters_and_drops_numbers() -> None:
    tokens = Tokenizer().tokenize("Hello, World! os.path don't __init__ read-only 3.11 x86_64 'quoted' über")
    assert tokens == ["hello", "world", "os", "path", "don't", "init", "read-only", "x86_64", "quoted", "über"]


def test_tokenizer_options_cased_and_length() -> None:
    tokens = Tokenizer(TokenizerOptions(lowercase=False, min_length=3, max_length=5)).tokenize("The ab Kernel cat")
    assert tokens == ["The", "cat"]
    with pytest.raises(ValueError, match="corpus.tokenizer.min_length must be at least 1, got 0"):
        TokenizerOptions(min_length=0)


def test_select_new_tokens_counts_coverage_and_cap() -> None:
    from pipeline.counts import TokenCounts

    table = EmbeddingTable(["the", "cat"], np.zeros((2, 2), np.float32))
    counts = TokenCounts({"the": 10, "cat": 2, "zyx": 5, "abc": 5, "rare": 1, "top": 9}, total=32, documents=3)
    vocab = select_new_tokens(counts, table, VocabOptions(min_count=5, max_new=2))
    assert vocab.new_tokens == ("top", "abc") and vocab.new_counts == (9, 5)
    assert vocab.candidates == 3 and vocab.frozen_rows == 2 and vocab.shifted == ()
    assert vocab.coverage_before == pytest.approx(12 / 32)
    assert vocab.coverage_with(frozenset(vocab.new_tokens), counts) == pytest.approx(26 / 32)
    with pytest.raises(ValueError, match="vocab.min_count must be at least 1, got 0"):
        VocabOptions(min_count=0)


def test_pairs_respect_window_and_document_boundaries() -> None:
    # tokens: doc0 = [t0 c1 c2 | doc1 = c3 t0 c4]; target id 0 at positions 0 and 4; -1 = not in table
    context = np.array([-1, 1, 2, 3, -1, 4])
    target = np.array([0, -1, -1, -1, 0, -1])
    document = np.array([0, 0, 0, 1, 1, 1])
    rows, cols = np.divmod(_pair_keys(context, target, document, window_offsets(1), 5), 5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (0, 3), (0, 4)]
    rows, cols = np.divmod(_pair_keys(context, target, document, window_offsets(5), 5), 5)
    assert sorted(cols.tolist()) == [1, 2, 3, 4]
    empty = _pair_keys(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), window_offsets(2), 5)
    assert empty.shape == (0,)


@pytest.fixture
def planted(tmp_path: Path):  # noqa: ANN201
    return write_planted(tmp_path / "planted")


@pytest.mark.parametrize("fold_pairs", [4_000_000, 7])
def test_context_counts_match_a_direct_count(planted, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                             fold_pairs: int) -> None:
    import pipeline.cooccurrence as module
    import pipeline.counts as counts_module

    monkeypatch.setattr(module, "FOLD_PAIRS", fold_pairs)  # 7: a fold per batch, each summed into the total
    monkeypatch.setattr(counts_module, "COUNT_BLOCK_BYTES", 1024)  # and many batches
    folds: list[int] = []
    monkeypatch.setattr(module, "key_counts", lambda *a: folds.append(len(a[0])) or key_counts(*a))
    table = planted.table
    corpus = files_corpus([str(planted.corpus_path)])
    counts = context_counts(corpus, Tokenizer(), table, ["zorblax"], window=2, progress=False)
    assert len(folds) > (1 if fold_pairs < 100 else 0)
    expected = np.zeros(len(table))
    for line in planted.corpus_path.read_text().splitlines():
        words = Tokenizer().tokenize(line)
        for i, w in enumerate(words):
            if w == "zorblax":
                for j in range(max(0, i - 2), min(len(words), i + 3)):
                    if j != i and words[j] in table:
                        expected[table.index_of(words[j])] += 1
    np.testing.assert_array_equal(counts.matrix.toarray()[0], expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_counts_sum_repeated_pairs_as_scipy_does(weighted: bool) -> None:
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(0, 30, size=5000), rng.integers(0, 70, size=5000)  # many repeats
    weights = rng.random(5000) if weighted else None
    got = sparse_counts(rows, cols, (31, 70), weights)
    expected = sp.csr_matrix((np.ones(5000) if weights is None else weights, (rows, cols)), shape=(31, 70))
    expected.sum_duplicates()
    assert got.shape == (31, 70) and got.dtype == (np.float64 if weighted else np.float32)
    assert got.has_canonical_format and got.nnz == expected.nnz
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-12)
    empty = sparse_counts(np.zeros(0, np.int64), np.zeros(0, np.int64), (3, 4))
    assert empty.shape == (3, 4) and empty.nnz == 0
    narrow = key_counts((rows * 70 + cols).astype(key_dtype((31, 70))), (31, 70), weights)  # int32 keys
    assert (narrow != got).nnz == 0 and narrow.dtype == got.dtype
    with pytest.raises(ValueError, match=r"a column id outside 0..69 \(min 0, max 70\)"):
        sparse_counts(np.array([0, 1]), np.array([0, 70]), (31, 70))  # would land in the next row's cell
    with pytest.raises(ValueError, match="a row id outside 0..30"):
        sparse_counts(np.array([-1]), np.array([0]), (31, 70))


def test_key_dtype_narrows_only_where_every_key_fits() -> None:
    assert key_dtype((10_475, 21_745)) is np.int32  # the kit's context counts
    assert key_dtype((1, 2**31 - 1)) is np.int32 and key_dtype((1, 2**31)) is np.int64
    assert key_dtype((10_000, 3_000_000)) is np.int64  # a 3M-row table


def test_integrity_catches_any_bit_change_of_a_frozen_row() -> None:
    base = planted_table()
    ok = AdaptedTable(base.append(["new"], np.ones((1, base.dim), np.float32)), len(base), ("new",))
    report = check_integrity(base, ok)
    assert report.ok and report.frozen_max_abs_diff == 0.0
    matrix = np.array(ok.table.matrix)
    matrix[3, 2] = np.nextafter(matrix[3, 2], np.float32(np.inf))  # one ulp
    bad = AdaptedTable(EmbeddingTable(ok.table.tokens, matrix), len(base), ("new",))
    report = check_integrity(base, bad)
    assert not report.ok and report.frozen_changed_rows == 1 and report.frozen_max_abs_diff > 0
    zero = np.zeros((2, 3), np.float32)
    negative = zero.copy()
    negative[0, 0] = -0.0
    signed = AdaptedTable(EmbeddingTable(["a", "b"], negative), 2, ())
    report = check_integrity(EmbeddingTable(["a", "b"], zero), signed)
    assert report.frozen_changed_rows == 1  # bit-identical means -0.0 != 0.0
    trained = AdaptedTable(EmbeddingTable(ok.table.tokens, matrix), len(base), ("new",), trained_rows=(3,))
    assert check_integrity(base, trained).ok
    moved = AdaptedTable(EmbeddingTable(list(reversed(base.tokens)), np.array(base.matrix)), len(base), ())
    assert check_integrity(base, moved).tokens_moved == len(base)


def test_nearest_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.neighbours as module

    monkeypatch.setattr(module, "BLOCK_ROWS", 7)  # several blocks, merged
    rng = np.random.default_rng(3)
    table = EmbeddingTable([f"w{i}" for i in range(40)], rng.normal(size=(40, 8)).astype(np.float32))
    result = nearest(table, ["w0", "w5"], k=4)
    unit = table.matrix / np.linalg.norm(table.matrix, axis=1, keepdims=True)
    for query in ("w0", "w5"):
        scores = unit @ unit[table.index_of(query)]
        order = [i for i in np.argsort(-scores) if table.tokens[i] != query][:4]
        assert [t for t, _ in result[query]] == [table.tokens[i] for i in order]
        np.testing.assert_allclose([s for _, s in result[query]], scores[order], rtol=1e-5)
    with pytest.raises(KeyError, match="token 'nope' not in table"):
        nearest(table, ["nope"])


def test_export_writes_every_format_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = planted_table()
    adapted = AdaptedTable(base.append(["new"], np.ones((1, base.dim), np.float32)), len(base), ("new",))
    paths = export_table(adapted, tmp_path / "export", ["word2vec_text", "npy", "word2vec_binary"])
    for path in paths.values():
        again = load_table(path, LoadOptions(cache=False, progress=False))
        assert again.tokens == adapted.table.tokens
    import pipeline.export as module

    real_save = module.save_table
    calls = []

    def failing(table: EmbeddingTable, path: Path, fmt: str) -> None:
        calls.append(fmt)
        if fmt == "safetensors":
            raise OSError("disk full")
        real_save(table, path, fmt)

    monkeypatch.setattr(module, "save_table", failing)
    with pytest.raises(OSError, match="disk full"):
        export_table(adapted, tmp_path / "export2", ["glove", "safetensors"])
    assert calls == ["glove", "safetensors"]
    assert list((tmp_path / "export2").iterdir()) == []  # not even the glove file that was written
    manifest = build_manifest(adapted=adapted, base_path="t", base_checksum=base.checksum, corpus_fingerprint="f",
                              config_hash="h")
    assert manifest["appended"] == [{"token": "new", "index": len(base)}]
    assert manifest["base"]["checksum"] == base.checksum


def test_demo_table_without_the_demo_extra_says_how_to_install() -> None:
    with pytest.raises(InputError, match=r"package 'no_such_demo_pkg' is not installed \(install the demo extra"):
        load_table("pkg://no_such_demo_pkg/model/model.safetensors")


def test_shift_score_finds_the_token_used_in_another_cluster(tmp_path: Path) -> None:

    from pipeline.shift import general_probabilities, score_shift, select_shifted, shift_candidates

    rng = np.random.default_rng(5)
    lines = []
    for i in range(600):
        cluster = "abc"[i % 3]
        words = list(rng.choice(CLUSTERS[cluster], size=8))
        if cluster == "b" and i % 2:
            words.insert(3, "cello")  # a music word used among hardware words: shifted
        lines.append(" ".join(w for w in words if w != "cello" or cluster == "b"))
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    table = planted_table()
    corpus = files_corpus([str(tmp_path / "c.txt")])
    counts = count_tokens(corpus, Tokenizer(), progress=False)
    candidates = shift_candidates(counts, table, min_count=20)
    assert "cello" in candidates and "the" not in candidates
    general = general_probabilities(table, None)
    assert "apple" not in shift_candidates(counts, table, 20, general, skip_common=1)  # row 0: most common
    contexts = context_counts(corpus, Tokenizer(), table, candidates, window=3, progress=False)
    scored = score_shift(candidates, contexts, table, counts, general_probabilities(table, None))
    assert scored[0].token == "cello" and scored[0].distance > 1.0
    assert [s.token for s in select_shifted(scored, top=5, threshold=2.0)] == ["cello"]
    assert len(select_shifted(scored, top=3, threshold=None)) == 3


def test_general_frequencies_from_a_list(tmp_path: Path) -> None:
    from pipeline.shift import general_probabilities

    table = EmbeddingTable(["a", "b", "c"], np.zeros((3, 2), np.float32))
    (tmp_path / "freq.txt").write_text("a 60\nb 20\nzz 5\n")
    np.testing.assert_allclose(general_probabilities(table, str(tmp_path / "freq.txt")), [60 / 90, 20 / 90, 10 / 90])
    zipf = general_probabilities(table, None)
    assert zipf[0] > zipf[1] > zipf[2] and zipf.sum() == pytest.approx(1.0)
    (tmp_path / "bad.txt").write_text("a 60\nb twenty\n")
    with pytest.raises(InputError, match=r"bad.txt:2: expected 'token count', got 'b twenty'"):
        general_probabilities(table, str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="frequency list not found"):
        general_probabilities(table, str(tmp_path / "missing.txt"))


def test_new_tokens_ranked_by_specificity(tmp_path: Path) -> None:
    from pipeline.counts import TokenCounts

    table = EmbeddingTable(["the"], np.zeros((1, 2), np.float32))
    counts = TokenCounts({"the": 50, "common": 30, "jsonb": 10, "ioctl": 8}, total=98, documents=5)
    (tmp_path / "freq.txt").write_text("the 1000000\ncommon 50000\nioctl 2\n")
    by_count = select_new_tokens(counts, table, VocabOptions(min_count=5))
    assert by_count.new_tokens == ("common", "jsonb", "ioctl")
    specific = select_new_tokens(counts, table, VocabOptions(min_count=5, rank="specificity",
                                                              general_frequencies=str(tmp_path / "freq.txt")))
    assert specific.new_tokens == ("jsonb", "ioctl", "common")  # jsonb is absent from general use
    assert specific.new_counts == (10, 8, 30)
    with pytest.raises(ValueError, match="vocab.rank=specificity needs vocab.general_frequencies"):
        VocabOptions(rank="specificity")
