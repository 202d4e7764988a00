"""Induction methods on planted clusters, their fallbacks, the subword model and the self-test."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from planted import CLUSTERS, NEW, Planted, planted_table, write_planted

import pipeline.induce as induce_module
import pipeline.selftest as selftest_module
import pipeline.subword as subword_module
from pipeline.adapted import append_induced
from pipeline.cooccurrence import context_counts
from pipeline.corpus import files_corpus
from pipeline.counts import TokenCounts, count_tokens
from pipeline.errors import InputError
from pipeline.induce import (
    InduceOptions,
    context_weights,
    fitting_tokens,
    induce_vectors,
    morphology_bases,
    place_shifted,
)
from pipeline.neighbours import nearest
from pipeline.selftest import held_out_tokens, induce_and_test, self_test
from pipeline.subword import SubwordModel, fit_subword
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer


@pytest.fixture
def planted(tmp_path: Path) -> Planted:
    return write_planted(tmp_path / "planted")


def induce_all(table: EmbeddingTable, corpus_path: Path, tokens: list[str], options: InduceOptions):  # noqa: ANN201
    corpus = files_corpus([str(corpus_path)])
    counts = count_tokens(corpus, Tokenizer(), progress=False)
    targets = tuple(dict.fromkeys([*tokens, *fitting_tokens(counts, table, options)]))
    contexts = context_counts(corpus, Tokenizer(), table, targets, window=options.window, progress=False)
    return induce_vectors(contexts, table, counts, tokens, options), contexts, counts


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("method", ["auto", "alacarte", "mean_context"])
def test_context_methods_place_new_tokens_near_their_cluster(planted: Planted, method: str) -> None:
    options = InduceOptions(method=method, window=3, subword_weight=0.0)
    induced, _, _ = induce_all(planted.table, planted.corpus_path, list(NEW), options)
    assert set(induced.tokens) == set(NEW) and all(n > 0 for n in induced.contexts)
    assert set(induced.methods) == {"mean_context" if method == "mean_context" else "alacarte"}
    near = nearest(append_induced(planted.table, induced).table, list(NEW), k=5)
    for token, cluster in NEW.items():
        neighbours = [other for other, _ in near[token]]
        assert sum(n in CLUSTERS[cluster] for n in neighbours) >= 4, (method, token, neighbours)


def test_auto_blends_subword_and_falls_back_to_it_for_rare_contexts(planted: Planted, tmp_path: Path) -> None:
    text = planted.corpus_path.read_text() + "applez\n" * 5 + "apricots almond anise apple\n" * 5
    (tmp_path / "c.txt").write_text(text)  # applez: never beside a table token; apricots: among cluster a
    induced, _, _ = induce_all(planted.table, tmp_path / "c.txt", [*NEW, "applez", "apricots"],
                               InduceOptions(window=3, morphology_weight=0.0))  # apricots inflects apricot
    methods = dict(zip(induced.tokens, induced.methods, strict=True))
    assert methods == {"zorblax": "alacarte", "quuxify": "alacarte",  # no n-gram shared with the table
                       "applez": "subword", "apricots": "alacarte+subword"}
    vectors = dict(zip(induced.tokens, induced.vectors, strict=True))
    apple = planted.table.vector("apple")
    assert _cosine(vectors["applez"], apple) > 0.5  # shares <ap, app, appl, pple … with apple


def test_morphology_bases_are_compound_parts_or_the_inflected_table_token() -> None:
    rng = np.random.default_rng(5)
    words = ["buffer", "cache", "library", "big", "endian", "read", "only", "mode", "mod", "zero"]
    matrix = rng.normal(size=(len(words), 8)).astype(np.float32)
    matrix[words.index("zero")] = 0.0
    table = EmbeddingTable(words, matrix)
    unit = {w: table.vector(w) / np.linalg.norm(table.vector(w)) for w in words if w != "zero"}
    tokens = ["buffers", "caching", "libraries", "big-endian", "read_only", "big-bang", "us", "zzz", "bigs",
              "modes", "zeros", "-", "a--b", "big--endian", "mode"]
    bases, found = morphology_bases(table, tokens)
    assert found.tolist() == [True, True, True, True, True, False, False, False, True,
                              True, False, False, False, True, False]
    np.testing.assert_allclose(bases[9], unit["mode"], rtol=1e-6)  # modes -> mode, not mod
    assert not bases[10].any()  # a row of zeros is no base
    np.testing.assert_allclose(bases[13], bases[3], rtol=1e-6)  # empty parts between hyphens are dropped
    np.testing.assert_allclose(bases[0], unit["buffer"], rtol=1e-6)
    np.testing.assert_allclose(bases[1], unit["cache"], rtol=1e-6)  # caching -> cach(e)
    np.testing.assert_allclose(bases[2], unit["library"], rtol=1e-6)
    compound = (unit["big"] + unit["endian"]) / np.linalg.norm(unit["big"] + unit["endian"])
    np.testing.assert_allclose(bases[3], compound, rtol=1e-6)
    assert not bases[5].any()  # "bang" is not a table token; "big-ban" is no inflection either
    assert not bases[6].any()  # "us": its stem "u" is shorter than three characters
    # held-out tokens are not bases: the self-test must not see their rows
    _, found = morphology_bases(table, ["buffers", "big-endian"], hidden=["buffer", "endian"])
    assert not found.any()


def test_morphology_moves_induced_vectors_toward_their_base_and_places_tokens_alone(planted: Planted,
                                                                                     tmp_path: Path) -> None:
    text = planted.corpus_path.read_text() + "apricots almond anise apple\n" * 5 + "qq-zz\n" * 5
    (tmp_path / "c.txt").write_text(text)
    table = planted.table
    table = table.append(["qq", "zz"], np.stack([table.vector("apple"), table.vector("bolt")]))
    tokens = ["apricots", "qq-zz", "zorblax"]
    # 7-grams only: qq-zz shares none with the table, so nothing but its parts can place it
    options = InduceOptions(window=3, ngram_min=7, ngram_max=7)
    off, _, _ = induce_all(table, tmp_path / "c.txt", tokens, dataclasses.replace(options, morphology_weight=0.0))
    on, _, _ = induce_all(table, tmp_path / "c.txt", tokens, options)
    methods = dict(zip(on.tokens, on.methods, strict=True))
    assert methods["apricots"] == "alacarte+subword+morphology"
    assert methods["zorblax"] == dict(zip(off.tokens, off.methods, strict=True))["zorblax"]  # no base: unchanged
    assert "qq-zz" not in off.tokens and methods["qq-zz"] == "morphology"  # no context, no n-gram: the base alone
    v_on, v_off = dict(zip(on.tokens, on.vectors, strict=True)), dict(zip(off.tokens, off.vectors, strict=True))
    apricot = table.vector("apricot")
    assert _cosine(v_on["apricots"], apricot) > _cosine(v_off["apricots"], apricot)
    np.testing.assert_array_equal(v_on["zorblax"], v_off["zorblax"])
    expected = table.vector("apple") / np.linalg.norm(table.vector("apple")) + \
        table.vector("bolt") / np.linalg.norm(table.vector("bolt"))
    assert _cosine(v_on["qq-zz"], expected) > 0.9999
    # the method's norm is kept; a token placed by its base alone gets the table's median row norm
    assert np.linalg.norm(v_on["apricots"]) == pytest.approx(np.linalg.norm(v_off["apricots"]), rel=1e-5)
    median = float(np.median(np.linalg.norm(np.asarray(table.matrix, dtype=np.float64), axis=1)))
    assert np.linalg.norm(v_on["qq-zz"]) == pytest.approx(median, rel=1e-5)
    with pytest.raises(ValueError, match="induce.morphology_weight must be >= 0"):
        InduceOptions(morphology_weight=-1.0)
    with pytest.raises(ValueError, match="induce.subword_rank must be >= 0"):
        InduceOptions(subword_rank=-1)


def test_the_self_test_hides_its_held_out_rows_from_the_bases(planted: Planted) -> None:
    table = planted.table
    table = table.append(["apricots"], table.vector("apricot")[None, :] * 1.01)  # a held-out inflection
    text = planted.corpus_path.read_text() + "apricots almond anise apple\n" * 5
    corpus_path = planted.corpus_path.parent / "more.txt"
    corpus_path.write_text(text)
    options = InduceOptions(window=3)
    _, contexts, counts = induce_all(table, corpus_path, [], options)
    induced = induce_vectors(contexts, table, counts, ("apricots",), options, hidden=("apricots", "apricot"))
    assert induced.methods == ("alacarte+subword",)  # its base, apricot, is held out with it
    induced = induce_vectors(contexts, table, counts, ("apricots",), options, hidden=("apricots",))
    assert induced.methods == ("alacarte+subword+morphology",)


def test_shifted_tokens_start_between_their_pretrained_row_and_their_domain_vector(
        planted: Planted, tmp_path: Path) -> None:
    # anise (cluster a) is used here mostly among cluster c's words: its domain vector lies toward c
    text = planted.corpus_path.read_text() + "cello anise cymbal clarinet anise cornet conga celesta\n" * 60
    (tmp_path / "c.txt").write_text(text)
    options = InduceOptions(window=3, subword_weight=0.0)
    induced, contexts, counts = induce_all(planted.table, tmp_path / "c.txt", list(NEW), options)
    assert induced.context_map is not None
    table = planted.table
    pretrained = table.vector("anise")
    weights = context_weights(table, counts, options, np.zeros(0, dtype=np.int64))  # sif by default
    means, _ = contexts.mean_vectors(table, ["anise"], weights)
    domain = (means @ induced.context_map)[0]  # a la carte's vector for anise's contexts in this corpus
    c_centre = np.mean([table.vector(w) for w in CLUSTERS["c"]], axis=0)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    placed = place_shifted(contexts, table, counts, ["anise", "cello"], options, induced.context_map)
    assert placed.tokens == ("anise", "cello") and placed.methods == ("pretrained+alacarte",) * 2
    assert placed.contexts[0] > 0 and not placed.unplaced
    start = placed.vectors[0]
    assert np.isclose(np.linalg.norm(start), np.linalg.norm(pretrained), rtol=1e-5)  # the norm is kept
    # the sum of the two unit vectors: halfway in angle between the pretrained row and the domain vector
    assert np.isclose(cosine(start, pretrained), cosine(start, domain), atol=1e-4)
    assert cosine(start, pretrained) > cosine(domain, pretrained)
    assert cosine(start, c_centre) > cosine(pretrained, c_centre)  # moved toward its use among cluster c
    # no move: a weight of 0, no map, or too few contexts keep the pretrained rows bit for bit
    for kept in (place_shifted(contexts, table, counts, ["anise"], dataclasses.replace(options, shift_weight=0.0),
                               induced.context_map),
                 place_shifted(contexts, table, counts, ["anise"], options, None),
                 place_shifted(contexts, table, counts, ["anise"], dataclasses.replace(options, min_contexts=10**6),
                               induced.context_map)):
        assert kept.methods == ("pretrained",) and kept.contexts == placed.contexts[:1]
        assert np.array_equal(kept.vectors[0].view(np.uint32), pretrained.view(np.uint32))
    # induction placed no new token, so it fitted no map: one is fitted for the shifted rows
    assert place_shifted(contexts, table, counts, ["anise"], options, None, fit_map=True).methods == (
        "pretrained+alacarte",)
    with pytest.raises(ValueError, match="induce.shift_weight must be >= 0"):
        InduceOptions(shift_weight=-1.0)


def test_mean_context_leaves_tokens_without_context_unplaced(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("lonely\n" * 6)
    induced, _, _ = induce_all(planted_table(), tmp_path / "c.txt", ["lonely"], InduceOptions(method="mean_context"))
    assert induced.tokens == () and induced.unplaced == ("lonely",)


def test_random_is_noise_at_the_table_scale(planted: Planted) -> None:
    induced, _, _ = induce_all(planted.table, planted.corpus_path, list(NEW), InduceOptions(method="random"))
    assert induced.methods == ("random", "random")
    assert 0.5 < induced.vectors.std() / planted.table.matrix.std() < 2


def test_too_small_corpus_falls_back_or_fails_when_alacarte_is_forced(
    planted: Planted, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    wide = EmbeddingTable(planted.table.tokens, rng.normal(size=(len(planted.table), 64)).astype(np.float32))
    with caplog.at_level(logging.WARNING):
        induced, _, _ = induce_all(wide, planted.corpus_path, list(NEW), InduceOptions(window=3, subword_weight=0))
    assert set(induced.methods) == {"mean_context"}
    assert "a la carte needs at least 64 fitting tokens" in caplog.text
    assert "falling back to mean_context" in caplog.text
    # blending with subword vectors (the default) falls back the same way, with no subword model kept
    blended, contexts, counts = induce_all(wide, planted.corpus_path, list(NEW), InduceOptions(window=3))
    assert set(blended.methods) == {"mean_context"} and blended.subword is None
    given, _ = induce_and_test(contexts, wide, counts, list(NEW), InduceOptions(window=3, selftest_size=0))
    assert set(given.methods) == {"mean_context"} and given.subword is None
    with pytest.raises(InputError, match=r"induce.method=alacarte: a la carte needs at least 64 fitting tokens"):
        induce_all(wide, planted.corpus_path, list(NEW), InduceOptions(method="alacarte", window=3))


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="induce.window must be at least 1, got 0"):
        InduceOptions(window=0)
    with pytest.raises(ValueError, match="induce.method must be one of"):
        InduceOptions(method="glove")
    with pytest.raises(ValueError, match="induce.ngram_min must be in 1..ngram_max"):
        InduceOptions(ngram_min=7, ngram_max=6)


def test_subword_model_fits_the_table() -> None:
    table = planted_table()
    model = fit_subword(list(table.tokens), np.asarray(table.matrix), ridge=0.01)
    predicted, known = model.predict(["apricot", "qqqq"])
    truth = table.vector("apricot")
    assert float(predicted[0] @ truth / np.linalg.norm(predicted[0]) / np.linalg.norm(truth)) > 0.9
    assert known[1] == 0 and not predicted[1].any()


@pytest.mark.parametrize("parts", [1, 3])
def test_subword_columns_solved_in_groups_give_the_same_model(monkeypatch: pytest.MonkeyPatch, parts: int) -> None:
    table = planted_table()
    tokens, vectors = list(table.tokens), np.asarray(table.matrix)
    monkeypatch.setattr(subword_module, "CG_PARTS", parts)
    grouped = fit_subword(tokens, vectors, ridge=0.01, tolerance=1e-6)
    monkeypatch.setattr(subword_module, "CG_PARTS", 2)
    halves = fit_subword(tokens, vectors, ridge=0.01, tolerance=1e-6)
    assert grouped.index == halves.index
    # each column's solve is its own: only where each group stops differs, within the tolerance
    np.testing.assert_allclose(grouped.vectors, halves.vectors, rtol=1e-3, atol=1e-4)


_FIT_IN_A_CHILD = """
import hashlib, sys
import numpy as np
from pipeline.subword import fit_subword
rng = np.random.default_rng(0)
tokens = [f"{a}{b}{c}" for a in ("pre", "post", "sub") for b in ("load", "read", "write") for c in ("er", "ing", "s")]
model = fit_subword(tokens, rng.normal(size=(len(tokens), 8)).astype(np.float32), ridge=0.01)
sys.stdout.write(" ".join(model.index) + "|" + hashlib.sha256(model.vectors.tobytes()).hexdigest())
"""


def test_subword_model_is_the_same_in_every_process() -> None:
    """Python salts its string hashes per process: the n-gram numbering must not follow them."""
    fitted = {subprocess.run([sys.executable, "-c", _FIT_IN_A_CHILD], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(fitted) == 1


def test_self_test_holds_out_table_tokens_without_touching_the_table(planted: Planted) -> None:
    options = InduceOptions(window=3, selftest_size=6, subword_weight=0.0)
    before = np.array(planted.table.matrix)
    _, contexts, counts = induce_all(planted.table, planted.corpus_path, list(NEW), options)
    result = self_test(contexts, planted.table, counts, options)
    assert result is not None and result.size == 6
    assert 0.0 <= result.recall_at_10 <= 1.0 and -1.0 <= result.mean_cosine <= 1.0
    assert result.mean_cosine > 0.5  # cluster words are placed near their cluster, so near themselves
    np.testing.assert_array_equal(planted.table.matrix, before)
    assert self_test(contexts, planted.table, TokenCounts({}, 0, 0), options) is None


def test_induction_and_its_self_test_share_one_subword_fit_without_the_held_out_rows(
        planted: Planted, monkeypatch: pytest.MonkeyPatch) -> None:
    options = InduceOptions(window=3, selftest_size=6)
    _, contexts, counts = induce_all(planted.table, planted.corpus_path, list(NEW), options)
    hidden_sets: list[set[str] | None] = []
    real_fit = induce_module.fit_table_subword

    def counted_fit(table: EmbeddingTable, fit_options: InduceOptions, hidden: set[str] | None = None) -> SubwordModel:
        hidden_sets.append(hidden)
        return real_fit(table, fit_options, hidden)

    monkeypatch.setattr(induce_module, "fit_table_subword", counted_fit)
    monkeypatch.setattr(selftest_module, "fit_table_subword", counted_fit)
    induced, checked = induce_and_test(contexts, planted.table, counts, list(NEW), options)
    held = held_out_tokens(contexts, planted.table, counts, options)
    assert hidden_sets == [set(held)] and len(held) == 6
    assert checked is not None and checked.held_out is not None and set(checked.held_out.tokens) <= set(held)
    assert induced.subword is not None
    assert checked.held_out.subword is None  # the self-test keeps vectors for the probes, not the model
