"""Evaluators: readers of WordSim/SimLex, pair and analogy files; similarity rho, relatedness AUC, 3CosAdd accuracy."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.errors import InputError
from pipeline.evaluate import (
    read_analogies,
    read_pairs,
    read_scored_pairs,
    relatedness_auc,
    top_rows,
    word_analogies,
    word_similarity,
)
from pipeline.table import EmbeddingTable


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _angles_table(*extra: tuple[str, list[float]]) -> EmbeddingTable:
    """Unit rows at 0, 20, 50 and 90 degrees: cosines cos(20)=.94, cos(30)=.87, cos(50)=.64, cos(90)=0."""
    rows = [(f"a{deg}", [math.cos(math.radians(deg)), math.sin(math.radians(deg))]) for deg in (0, 20, 50, 90)]
    rows += list(extra)
    return EmbeddingTable([t for t, _ in rows], np.array([v for _, v in rows], dtype=np.float32))


# -- readers -------------------------------------------------------------------------------------
def test_scored_pairs_read_like_wordsim353(tmp_path: Path) -> None:
    path = _write(tmp_path / "ws.tsv", "# The WordSimilarity-353 Test Collection\n# Word 1\tWord 2\tHuman (mean)\n"
                  "love\tsex\t6.77\ntiger\tcat\t7.35\r\n\ntiger\ttiger\t10.00\n")
    read = read_scored_pairs(path)
    assert read.pairs == (("love", "sex"), ("tiger", "cat"), ("tiger", "tiger"))
    np.testing.assert_array_equal(read.scores, [6.77, 7.35, 10.0])
    assert read.lines == (3, 4, 6) and read.source == str(path)


def test_pairs_and_analogies_read(tmp_path: Path) -> None:
    pairs = _write(tmp_path / "p.tsv", "# related\nbtree\tindex\nvacuum\tautovacuum\n")
    assert read_pairs(pairs) == (("btree", "index"), ("vacuum", "autovacuum"))
    questions = _write(tmp_path / "q.txt", ": capital-common-countries\nAthens Greece Baghdad Iraq\n"
                       "Athens  Greece\tBangkok Thailand\n: empty\n\n: family\nboy girl brother sister\n")
    read = read_analogies(questions)
    assert read.sections == ("capital-common-countries", "empty", "family")
    assert read.questions == (("Athens", "Greece", "Baghdad", "Iraq"), ("Athens", "Greece", "Bangkok", "Thailand"),
                              ("boy", "girl", "brother", "sister"))
    np.testing.assert_array_equal(read.section_of, [0, 0, 2])
    assert read.lines == (2, 3, 7)


@pytest.mark.parametrize("reader", [read_scored_pairs, read_pairs, read_analogies])
def test_a_missing_file_is_named(tmp_path: Path, reader: object) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: .* not found \(check the path"):
        reader(path)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("reader", "text", "line", "message"),
    [
        (read_scored_pairs, "# c\nlove\tsex\t6.77\ntiger cat 7.35\n", 3,
         r"expected 3 tab-separated fields, got 1 in 'tiger cat 7.35' \(each line reads word<TAB>word<TAB>score"),
        (read_scored_pairs, "love\tsex\tvery\n", 1, r"score 'very' is not a finite number \(each line reads"),
        (read_scored_pairs, "love\tsex\tnan\n", 1, r"score 'nan' is not a finite number"),
        (read_scored_pairs, "love\t \t1\n", 1, r"empty field in 'love\\t \\t1'"),
        (read_pairs, "a\tb\nc\td\t0.5\n", 2, r"expected 2 tab-separated fields, got 3 in 'c\\td\\t0.5' \(each line"),
        (read_analogies, ": s\na b c d\na b c\n", 3, r"expected 4 words, got 3 in 'a b c' \(each question reads"),
        (read_analogies, ":family\nboy girl brother sister\n", 1, r"expected 4 words, got 1 in ':family'"),
        (read_analogies, "boy girl brother sister\n", 1,
         r"question 'boy girl brother sister' before the first section header \(start the file with"),
        (read_scored_pairs, b"caf\xe9\tcoffee\t5\n", 1, r"not UTF-8 text: byte b'\\xe9' at column 4 \(save"),
    ],
)
def test_a_malformed_line_names_file_line_and_value(tmp_path: Path, reader: object, text: str | bytes, line: int,
                                                    message: str) -> None:
    path = tmp_path / "set.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:{line}: {message}") as caught:
        reader(path)  # type: ignore[operator]
    assert caught.value.line == line and "\n" not in str(caught.value)


# -- word similarity -----------------------------------------------------------------------------
SIMILARITY = "# word\tword\tscore\na0\ta20\t9\nA0\ta50\t7\na0\tA90\t1\na20\ta50\t5\na0\tmissing\t3\n"


def test_similarity_rho_by_hand(tmp_path: Path) -> None:
    # cosines .94, .64, 0, .87 against scores 9, 7, 1, 5: two ranks swap, rho = 1 - 6*2/(4*15) = 0.8
    table = _angles_table(("A0", [0.0, 1.0]))  # a later case variant: "A0" still means row a0
    result = word_similarity(table, read_scored_pairs(_write(tmp_path / "s.tsv", SIMILARITY)))
    assert result.rho == pytest.approx(0.8, abs=1e-12)
    assert (result.pairs, result.covered, result.coverage) == (5, 4, 0.8)
    assert result.pearson is not None and 0.8 < result.pearson < 1


def test_similarity_options_restrict_rows_and_case(tmp_path: Path) -> None:
    pairs = read_scored_pairs(_write(tmp_path / "s.tsv", SIMILARITY))
    table = _angles_table(("A0", [0.0, 1.0]))
    # only rows a0, a20, a50: pairs .94, .64, .87 against 9, 7, 5: rho = 1 - 6*2/(3*8) = 0.5
    restricted = word_similarity(table, pairs, restrict_vocab=3)
    assert restricted.rho == pytest.approx(0.5, abs=1e-12) and restricted.covered == 3
    # case-sensitive: "A0" is its own row (cos with a50 = cos 40), "A90" is missing
    exact = word_similarity(table, pairs, case_insensitive=False)
    assert exact.covered == 3 and exact.rho == pytest.approx(0.5, abs=1e-12)  # .94, cos40=.77, .87 vs 9, 7, 5


def test_similarity_with_no_covered_pair_reports_none(tmp_path: Path) -> None:
    pairs = read_scored_pairs(_write(tmp_path / "s.tsv", "x\ty\t1\nz\tw\t2\n"))
    result = word_similarity(_angles_table(), pairs)
    assert (result.rho, result.pearson, result.covered, result.coverage) == (None, None, 0, 0.0)
    empty = word_similarity(_angles_table(), read_scored_pairs(_write(tmp_path / "e.tsv", "# nothing\n")))
    assert (empty.rho, empty.pairs, empty.coverage) == (None, 0, 0.0)


# -- relatedness ---------------------------------------------------------------------------------
def _pairs_table() -> EmbeddingTable:
    """Four related pairs sharing a vector each, and a pair (p, q) orthogonal to each other and to all."""
    eye = np.eye(6, dtype=np.float32)
    tokens = ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2", "p", "q"]
    return EmbeddingTable(tokens, np.stack([eye[0], eye[0], eye[1], eye[1], eye[2], eye[2], eye[3], eye[3],
                                            eye[4], eye[5]]))


def test_relatedness_auc_by_hand_and_split() -> None:
    pairs = [("a1", "a2"), ("b1", "b2"), ("c1", "c2"), ("d1", "d2"), ("p", "q"), ("a1", "missing")]
    # related pairs: cos 1 against 0 for every partner, a win; (p, q): cos 0 against 0, a tie (half)
    for negatives in (1, 50):
        result = relatedness_auc(_pairs_table(), pairs, negatives=negatives, seed=3, touching={"q", "zzz"})
        assert result.auc == pytest.approx((4 + 0.5) / 5)
        assert (result.pairs, result.covered) == (6, 5)
        assert (result.touching_auc, result.touching, result.rest_auc, result.rest) == (0.5, 1, 1.0, 4)
    assert relatedness_auc(_pairs_table(), pairs).touching_auc is None


def test_relatedness_needs_three_words() -> None:
    result = relatedness_auc(_pairs_table(), [("a1", "a2"), ("x", "y")])
    assert (result.auc, result.covered, result.coverage) == (None, 1, 0.5)
    with pytest.raises(ValueError, match="negatives must be positive, got 0"):
        relatedness_auc(_pairs_table(), [("a1", "a2")], negatives=0)


# -- analogies -----------------------------------------------------------------------------------
def _royal_table() -> EmbeddingTable:
    """unit(woman) + unit(king) - unit(man) = (-.29, 1, .71, 0): queen scores .96; "King" (a later case
    variant of king, after the first five rows) scores .999, and apple nothing."""
    rows = {"man": [1, 0, 0, 0], "woman": [0, 1, 0, 0], "king": [1, 0, 1, 0], "queen": [0, 1, 1, 0],
            "apple": [0, 0, 0, 1], "King": [-0.3, 1, 0.7, 0]}
    return EmbeddingTable(list(rows), np.array(list(rows.values()), dtype=np.float32))


ANALOGIES = (": royal\nman woman king queen\nMAN WOMAN KING QUEEN\nman woman king prince\n"
             ": empty\n: fruit\nman woman apple queen\n")


def test_analogies_pass_over_case_variants_of_the_question_words(tmp_path: Path) -> None:
    questions = read_analogies(_write(tmp_path / "q.txt", ANALOGIES))
    table = _royal_table()
    result = word_analogies(table, questions)
    # royal: both forms right (King is passed over as a form of KING); the prince question is skipped
    # fruit: unit(woman) + unit(apple) - unit(man) scores King .60 before queen .41: King is not a question word
    assert [(s.name, s.correct, s.answered, s.questions) for s in result.sections] == [
        ("royal", 2, 2, 3), ("empty", 0, 0, 0), ("fruit", 0, 1, 1)]
    assert (result.correct, result.answered, result.questions) == (2, 3, 4)
    assert result.accuracy == pytest.approx(2 / 3) and result.coverage == 0.75
    assert [table.tokens[r] if r >= 0 else None for r in result.predicted] == ["queen", "queen", None, "King"]
    np.testing.assert_array_equal(result.right, [True, True, False, False])
    assert result.sections[1].accuracy is None and result.sections[0].accuracy == 1.0


def test_analogies_options_change_what_counts(tmp_path: Path) -> None:
    questions = read_analogies(_write(tmp_path / "q.txt", ANALOGIES))
    table = _royal_table()
    # case-sensitive: "King" is another word, and the better answer; upper-case questions are unknown
    exact = word_analogies(table, questions, case_insensitive=False)
    assert (exact.correct, exact.answered) == (0, 2)
    assert [table.tokens[r] if r >= 0 else None for r in exact.predicted] == ["King", None, None, "King"]
    # the first five rows only: King is out of reach, and queen is the best answer left to both questions
    top5 = word_analogies(table, questions, restrict_vocab=5, case_insensitive=False)
    assert (top5.correct, top5.answered) == (2, 2)
    nothing = word_analogies(table, read_analogies(_write(tmp_path / "n.txt", ": s\nx y z w\n")))
    assert (nothing.accuracy, nothing.coverage, nothing.sections[0].answered) == (None, 0.0, 0)


def test_top_rows_merges_blocks_and_batches_like_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    matrix: npt.NDArray[np.float32] = rng.normal(size=(1000, 16)).astype(np.float32)
    matrix[10] = 0.0  # a zero row scores 0, no NaN
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-30)
    expected = np.argsort(-(queries @ unit.T), axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(top_rows(matrix, queries, 8, query_batch=7, block_rows=97), expected)
    assert top_rows(matrix[:3], queries, 8).shape == (50, 3)


# -- the configured suite, neighbours before and after, integrity, the report ------------------------
def test_suite_names_metrics_by_file_and_leaves_out_undefined_figures(tmp_path: Path) -> None:
    from pipeline.evaluate.suite import EvaluateOptions, before_after, read_sets, score_table

    scored = _write(tmp_path / "ws353.v2.tsv", "a0\ta20\t9\na0\ta50\t5\na0\ta90\t1\n")
    pairs = _write(tmp_path / "rel pairs.tsv", "a0\ta20\nnew\ta50\nzzz\ta0\n")
    questions = _write(tmp_path / "q.txt", ": one/two\na0 a20 a50 a90\n")
    options = EvaluateOptions(similarity=(str(scored),), pairs=(str(pairs),), analogies=(str(questions),))
    sets = read_sets(options)
    base = _angles_table()
    after = base.append(["new"], np.array([[0.6, 0.8]], dtype=np.float32))
    before_m = score_table(base, sets, options, touching={"new"}).metrics("before")
    after_m = score_table(after, sets, options, touching={"new"}).metrics("after")
    assert before_m["eval/similarity/ws353/rho_before"] == pytest.approx(1.0)
    assert before_m["eval/pairs/rel pairs/coverage_before"] == pytest.approx(1 / 3)
    assert "eval/pairs/rel pairs/touching_auc_before" not in before_m  # no covered pair touches 'new' yet
    assert after_m["eval/pairs/rel pairs/touching_pairs_after"] == 1
    assert "eval/analogies/q/one/two/accuracy_after" not in after_m  # '/' in a section name is made safe
    assert "eval/analogies/q/one_two/accuracy_after" in after_m
    rows = dict((name, (b, a)) for name, b, a in before_after(before_m, after_m))
    assert rows["eval/pairs/rel pairs/coverage"] == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert rows["eval/pairs/rel pairs/touching_auc"][0] is None


def test_suite_options_are_checked(tmp_path: Path) -> None:
    from pipeline.evaluate.suite import EvaluateOptions

    with pytest.raises(ValueError, match="two files named 'pairs'"):
        EvaluateOptions(pairs=("a/pairs.tsv", "b/pairs.txt"))
    with pytest.raises(ValueError, match="evaluate.negatives must be positive, got 0"):
        EvaluateOptions(negatives=0)


def test_neighbours_before_and_after_leave_the_token_out() -> None:
    from pipeline.neighbours import neighbours_before_after

    table = _angles_table(("moved", [0.0, 1.0]))
    before = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)  # 'moved' came from a0's direction; a20 had none
    found = neighbours_before_after(table, ["moved", "a20"], before, k=2)
    assert [t for t, _ in found["moved"][0]] == ["a0", "a20"]
    assert [t for t, _ in found["moved"][1]] == ["a90", "a50"]
    assert found["a20"][0] == [] and "a20" not in [t for t, _ in found["a20"][1]]


def test_integrity_of_a_table_shorter_than_its_base() -> None:
    from pipeline.adapted import AdaptedTable
    from pipeline.integrity import check_integrity

    base = _angles_table()
    short = EmbeddingTable(base.tokens[:2], np.asarray(base.matrix[:2]))
    report = check_integrity(base, AdaptedTable(short, len(base), ()))
    assert not report.ok and report.frozen_changed_rows == 2 and report.tokens_moved == 2
    assert "2 frozen rows changed" in report.problems() and "not at their original index" in report.problems()


def test_report_markdown_escapes_cells_and_shows_changes() -> None:
    from pipeline.report import RunReport, collected_warnings

    with collected_warnings("pipeline") as warned:
        import logging

        logging.getLogger("pipeline.x").warning("first line\nsecond line")
    report = RunReport(title="t", chosen=[("a|b", "new", 3, None, "subword")], chosen_total=2,
                       comparison=[("eval/x/rho", 0.5, 0.75)], warnings=warned).markdown()
    assert warned == ["first line"] and "- first line" in report
    assert "| a\\|b | new | 3 | – | subword |" in report
    assert "| eval/x/rho | 0.5000 | 0.7500 | 0.2500 |" in report
    assert "shown: 1 of the 2 chosen" in report
