"""The report files of a run: PNG plots (pipeline.plots) and the Embedding Projector export (pipeline.projector)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import numpy.typing as npt
import pytest
import tensorflow as tf
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline import plots, projector
from pipeline.table import EmbeddingTable, row_norms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEW = ["zorblax", "quuxify", "tab\there", "line\nbreak", "back\\slash"]
SHIFTED = ["w25", "w28"]


def _table(base_rows: int = 30, dim: int = 8, seed: int = 0) -> EmbeddingTable:
    """``base_rows`` frequency-ordered words ``w0``...; the new tokens appended at the end."""
    rng = np.random.default_rng(seed)
    base = EmbeddingTable([f"w{i}" for i in range(base_rows)], rng.normal(0, 1, (base_rows, dim)).astype(np.float32))
    return base.append(NEW, rng.normal(0, 1, (len(NEW), dim)))


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert float(image[..., :3].std()) > 0.01, "the image is blank"
    return int(image.shape[1]), int(image.shape[0])


def _legend(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """Every figure the plots save, kept for inspection (the files are still written)."""
    kept: list[Figure] = []
    save = plots._save

    def keep(figure: Figure, path: Path) -> Path:
        kept.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    yield kept


# -- plots ------------------------------------------------------------------------------------------

HISTORY = {
    "train/loss": [(s, 500.0 * 0.5 ** (s / 10) + 1.0) for s in range(0, 200, 5)],
    "train/heldout_loss": [(s, 3.0 - s / 100) for s in range(0, 200, 50)],
    "train/probe_cosine": [(s, 0.1 + s / 400) for s in range(0, 200, 50)],
}


def test_loss_curves_one_panel_per_series_at_the_chosen_resolution(tmp_path: Path, figures: list[Figure]) -> None:
    path = plots.loss_curves(HISTORY, tmp_path / "loss.png")
    assert path == tmp_path / "loss.png"
    width, height = _png_size(path)
    assert 100 <= width / 8.0 <= 150 and (width, height) == (round(8.0 * plots.DPI), round(7.6 * plots.DPI))
    axes = figures[0].axes
    assert [ax.get_title(loc="left").split()[0] for ax in axes] == list(HISTORY)
    assert [ax.get_yscale() for ax in axes] == ["log", "linear", "linear"]  # loss spans 500 -> 1
    cosines = np.asarray(axes[2].lines[0].get_ydata(), dtype=float)
    np.testing.assert_allclose(cosines, [v for _, v in HISTORY["train/probe_cosine"]])
    assert axes[-1].get_xlabel() == "training step"
    assert _leftovers(tmp_path) == []


def test_loss_curves_sorts_steps_and_reports_non_finite_values(tmp_path: Path, figures: list[Figure]) -> None:
    plots.loss_curves({"train/loss": [(10, 2.0), (0, 4.0), (20, float("nan"))]}, tmp_path / "loss.png")
    ax = figures[0].axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 10, 20])
    assert "1 non-finite value(s) not drawn" in ax.get_title(loc="left")


def test_loss_curves_without_points_write_nothing(tmp_path: Path) -> None:
    assert plots.loss_curves({}, tmp_path / "loss.png") is None
    assert plots.loss_curves({"train/loss": []}, tmp_path / "loss.png") is None
    assert list(tmp_path.iterdir()) == []


def test_plots_are_byte_identical_when_regenerated(tmp_path: Path) -> None:
    table = _table()
    neighbours = {"zorblax": ["w1", "w2", "w25"], "quuxify": ["w3", "w1"]}
    norms = row_norms(table.matrix)
    for run in ("a", "b"):
        plots.loss_curves(HISTORY, tmp_path / run / "loss.png")
        plots.norm_histogram(norms[:30], norms[30:], tmp_path / run / "norms.png")
        plots.pca_map(table, ["zorblax", "quuxify"], neighbours, tmp_path / run / "pca.png", shifted=SHIFTED)
    for name in ("loss.png", "norms.png", "pca.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_failed_write_leaves_no_file_behind(tmp_path: Path) -> None:
    target = tmp_path / "loss.png"
    target.mkdir()  # a folder where the PNG should go: the rename fails after rendering (root ignores chmod)
    with pytest.raises(OSError):
        plots.loss_curves(HISTORY, target)
    assert _leftovers(tmp_path) == [] and list(target.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = plots.loss_curves(HISTORY, tmp_path / "loss.png")
    assert path is not None
    before = path.read_bytes()

    def broken(self: Figure, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(PNG_SIGNATURE)  # half a file, then the failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.loss_curves({"train/loss": [(0, 1.0)]}, path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_pca_map_colours_by_kind_and_names_new_tokens(tmp_path: Path, figures: list[Figure]) -> None:
    table = _table()
    neighbours = {"zorblax": ["w1", "w25", "quuxify"], "quuxify": ["w3", "w1"]}
    path = plots.pca_map(table, ["zorblax", "quuxify"], neighbours, tmp_path / "pca.png", shifted=SHIFTED)
    assert path is not None
    _png_size(path)
    ax = figures[0].axes[0]
    assert _legend(ax) == ["table token (2)", "shifted token (1)", "new token (2)"]
    names = [text.get_text() for text in ax.texts]
    assert names[:2] == ["zorblax", "quuxify"] and sorted(names[2:]) == ["w1", "w25", "w3"]
    assert "variance" in ax.get_xlabel() and "variance" in ax.get_ylabel()


def test_pca_map_caps_the_labels_and_keeps_odd_tokens_literal(tmp_path: Path, figures: list[Figure]) -> None:
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(400)]
    new = ["tab\tin" + "x" * 40] + [f"$\\notacommand{i}$" for i in range(40)]
    table = EmbeddingTable(words, rng.normal(0, 1, (400, 6)).astype(np.float32)).append(
        new, rng.normal(0, 1, (len(new), 6)))
    neighbours = {token: [f"w{(7 * i + j) % 400}" for j in range(8)] for i, token in enumerate(new)}
    assert plots.pca_map(table, new, neighbours, tmp_path / "pca.png") is not None  # mathtext would raise
    names = [text.get_text() for text in figures[0].axes[0].texts]
    assert len(names) == plots.NEW_LABELS + plots.NEIGHBOUR_LABELS
    assert names[0] == "tab\\tin" + "x" * (plots.LABEL_CHARS - 8) + "…"
    assert names[1] == r"$\notacommand0$"
    assert all(len(name) <= plots.LABEL_CHARS for name in names)
    # neighbours are named rank by rank: every named new token's nearest neighbour first
    nearest = {neighbours[token][0] for token in new[: plots.NEW_LABELS]}
    assert nearest <= set(names[plots.NEW_LABELS :])


def test_pca_map_without_new_tokens_writes_nothing_and_unknown_tokens_fail(tmp_path: Path) -> None:
    table = _table()
    assert plots.pca_map(table, [], {}, tmp_path / "pca.png") is None
    with pytest.raises(KeyError, match="'nowhere' not in table"):
        plots.pca_map(table, ["zorblax"], {"zorblax": ["nowhere"]}, tmp_path / "pca.png")
    assert list(tmp_path.iterdir()) == []


def test_pca_2d_finds_the_direction_of_most_variance() -> None:
    direction = np.array([3.0, 0.0, 4.0, 0.0]) / 5
    rng = np.random.default_rng(2)
    along = rng.normal(0, 10, 50)
    matrix = 7.0 + along[:, None] * direction + rng.normal(0, 0.01, (50, 4))
    coords, explained = plots.pca_2d(matrix)
    assert explained[0] > 0.999 and explained.sum() <= 1 + 1e-12
    assert abs(np.corrcoef(coords[:, 0], along)[0, 1]) > 0.999
    np.testing.assert_allclose(plots.pca_2d(matrix[::-1])[0], coords[::-1], atol=1e-9)  # signs fixed
    one, share = plots.pca_2d(np.ones((1, 3)))
    np.testing.assert_array_equal(one, [[0.0, 0.0]])
    np.testing.assert_array_equal(share, [0.0, 0.0])


def test_row_norms_a_block_at_a_time_over_a_memory_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(0, 2, (1000, 12)).astype(np.float32)
    matrix[5] = 1e30  # squares overflow float32
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    monkeypatch.setattr("pipeline.table.NORM_BLOCK_ROWS", 64)
    norms = row_norms(mapped)
    assert norms.dtype == np.float32 and norms.shape == (1000,)
    np.testing.assert_allclose(norms, np.linalg.norm(matrix.astype(np.float64), axis=1), rtol=1e-6)


def test_norm_histogram_marks_each_groups_median(tmp_path: Path, figures: list[Figure]) -> None:
    rng = np.random.default_rng(4)
    table_norms = rng.normal(5, 1, 20000).astype(np.float32)
    induced = np.append(rng.normal(3, 0.5, 40), [np.inf, 1e6])
    path = plots.norm_histogram(table_norms, induced, tmp_path / "norms.png")
    assert path is not None
    _png_size(path)
    ax = figures[0].axes[0]
    marked = sorted(float(np.asarray(line.get_xdata())[0]) for line in ax.lines)
    expected = sorted([float(np.median(table_norms)), float(np.median(induced[np.isfinite(induced)]))])
    np.testing.assert_allclose(marked, expected)
    low, high = ax.get_xlim()
    assert high < 100  # the 1e6 outlier sits in the edge bin instead of stretching the axis
    assert [text.split(" (")[0] for text in _legend(ax)] == ["table rows", "induced vectors"]
    assert plots.norm_histogram(np.array([]), np.array([np.nan]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


# -- projector --------------------------------------------------------------------------------------

def _metadata(folder: Path) -> list[list[str]]:
    text = (folder / projector.METADATA_FILE).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [line.split("\t") for line in text[:-1].split("\n")]


def _unescape(label: str) -> str:
    return re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)",
                  lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(m[1]) or chr(int(m[1][1:], 16)), label)


def _checkpoint_rows(folder: Path) -> npt.NDArray[np.float32]:
    reader = tf.train.load_checkpoint(str(folder))
    two_d = {name for name, shape in reader.get_variable_to_shape_map().items() if len(shape) == 2}
    assert two_d == {projector.TENSOR_NAME}  # the projector shows every 2-D tensor: only ours
    rows = reader.get_tensor(projector.TENSOR_NAME)
    assert rows.dtype == np.float32
    return rows


def test_projector_exports_new_shifted_and_the_table_head(tmp_path: Path) -> None:
    table = _table()
    out = tmp_path / "projector"
    assert projector.write_projector(table, out, new=NEW, shifted=SHIFTED, max_rows=12) == out
    meta = _metadata(out)
    assert meta[0] == ["token", "kind"] and all(len(row) == 2 for row in meta)
    expected_rows = [0, 1, 2, 3, 4, 25, 28, 30, 31, 32, 33, 34]  # head, shifted, new; in table order
    assert [_unescape(token) for token, _ in meta[1:]] == [table.tokens[r] for r in expected_rows]
    assert [kind for _, kind in meta[1:]] == ["frozen"] * 5 + ["shifted"] * 2 + ["new"] * 5
    rows = _checkpoint_rows(out)
    assert rows.shape == (12, table.dim)
    assert rows.tobytes() == np.ascontiguousarray(table.matrix[expected_rows]).tobytes()  # bit-identical
    vectors = np.loadtxt(out / projector.VECTORS_FILE, delimiter="\t", dtype=np.float32)
    assert vectors.tobytes() == rows.tobytes()
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint", "embedding.ckpt-1.data-00000-of-00001", "embedding.ckpt-1.index",
        "metadata.tsv", "projector_config.pbtxt", "vectors.tsv"]


def test_projector_config_names_the_checkpoint_tensor_and_the_metadata(tmp_path: Path) -> None:
    projector.write_projector(_table(), tmp_path, new=NEW, shifted=())
    text = (tmp_path / projector.CONFIG_FILE).read_text()
    assert re.findall(r'tensor_name: "([^"]*)"', text) == ["embedding/.ATTRIBUTES/VARIABLE_VALUE"]
    assert re.findall(r'metadata_path: "([^"]*)"', text) == ["metadata.tsv"]
    assert "model_checkpoint_path" not in text  # found through the relative `checkpoint` file instead
    assert 'model_checkpoint_path: "embedding.ckpt-1"' in (tmp_path / "checkpoint").read_text()


def test_projector_config_parses_as_tensorboards_proto(tmp_path: Path) -> None:
    config_pb2 = pytest.importorskip("tensorboard.plugins.projector.projector_config_pb2")
    from google.protobuf import text_format

    projector.write_projector(_table(), tmp_path, new=NEW, shifted=())
    config = text_format.Parse((tmp_path / projector.CONFIG_FILE).read_text(), config_pb2.ProjectorConfig())
    assert [(e.tensor_name, e.metadata_path) for e in config.embeddings] == [
        (projector.TENSOR_NAME, projector.METADATA_FILE)]
    assert text_format.MessageToString(config) == projector.CONFIG_TEXT


def test_projector_folder_still_opens_after_a_move(tmp_path: Path) -> None:
    table = _table()
    projector.write_projector(table, tmp_path / "run", new=NEW, shifted=SHIFTED, max_rows=8)
    moved = Path(shutil.move(tmp_path / "run", tmp_path / "downloaded"))
    assert len(_checkpoint_rows(moved)) == len(_metadata(moved)) - 1 == 8


def test_projector_max_rows_keeps_new_then_shifted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = _table()
    with caplog.at_level(logging.WARNING, logger="pipeline.projector"):
        projector.write_projector(table, tmp_path / "a", new=NEW, shifted=SHIFTED, max_rows=7)
    assert not caplog.records
    assert [kind for _, kind in _metadata(tmp_path / "a")[1:]] == ["shifted"] * 2 + ["new"] * 5

    with caplog.at_level(logging.WARNING, logger="pipeline.projector"):
        projector.write_projector(table, tmp_path / "b", new=NEW, shifted=SHIFTED, max_rows=6)
    meta = _metadata(tmp_path / "b")[1:]
    assert [kind for _, kind in meta] == ["shifted"] + ["new"] * 5 and [t for t, _ in meta][0] == "w25"
    assert "1 left out" in caplog.text
    assert len(_checkpoint_rows(tmp_path / "b")) == 6

    projector.write_projector(table, tmp_path / "c", new=NEW, shifted=SHIFTED, max_rows=10**6)
    assert [_unescape(t) for t, _ in _metadata(tmp_path / "c")[1:]] == list(table.tokens)
    with pytest.raises(ValueError, match="max_rows must be positive, got 0"):
        projector.write_projector(table, tmp_path / "d", new=NEW, shifted=SHIFTED, max_rows=0)


def test_projector_token_labels_are_escaped_one_line_each(tmp_path: Path) -> None:
    odd = ["a\tb", "c\nd", "e\\tf", "g\r\u2028h", ""]
    table = EmbeddingTable(odd + ["plain"], np.eye(6, dtype=np.float32))
    projector.write_projector(table, tmp_path, new=odd[:2], shifted=odd[2:4])
    raw = (tmp_path / projector.METADATA_FILE).read_text(encoding="utf-8")
    assert raw.count("\n") == 7 and raw.count("\t") == 7 and "\r" not in raw and "\u2028" not in raw
    meta = _metadata(tmp_path)[1:]
    assert meta[0][0] == "a\\tb" and meta[1][0] == "c\\nd" and meta[2][0] == "e\\\\tf"
    assert [_unescape(t) for t, _ in meta] == odd + ["plain"]
    assert [k for _, k in meta] == ["new", "new", "shifted", "shifted", "frozen", "frozen"]


def test_projector_failure_leaves_the_folder_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table()
    projector.write_projector(table, tmp_path, new=NEW, shifted=(), max_rows=6)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(labels: list[str], kinds: list[str], path: Path) -> None:
        path.write_text("token\tkind\nhalf", encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(projector, "_write_metadata", broken)
    with pytest.raises(OSError, match="disk full"):
        projector.write_projector(table, tmp_path, new=NEW, shifted=SHIFTED, max_rows=9)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no staging folder, nothing new


def test_projector_unknown_token_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="'nowhere' not in table"):
        projector.write_projector(_table(), tmp_path / "out", new=["nowhere"], shifted=())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tensorboards_projector_plugin_reads_the_export(tmp_path: Path) -> None:
    """Serve the export through TensorBoard's own projector plugin, as `tensorboard --logdir` would."""
    projector_plugin = pytest.importorskip("tensorboard.plugins.projector.projector_plugin")
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    table = _table()
    projector.write_projector(table, tmp_path, new=NEW, shifted=SHIFTED, max_rows=10)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    plugin = projector_plugin.ProjectorPlugin(base_plugin.TBContext(logdir=str(tmp_path), data_provider=provider))
    apps = plugin.get_plugin_apps()

    def get(route: str, **args: str) -> bytes:
        response = Client(apps[route]).get("/", query_string=args)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    assert json.loads(get("/runs")) == ["."]
    config = json.loads(get("/info", run="."))
    [embedding] = config["embeddings"]
    assert embedding["tensorName"] == projector.TENSOR_NAME and embedding["metadataPath"] == "metadata.tsv"
    assert [int(n) for n in embedding["tensorShape"]] == [10, table.dim]
    tensor = np.frombuffer(get("/tensor", run=".", name=projector.TENSOR_NAME), dtype=np.float32)
    assert tensor.tobytes() == _checkpoint_rows(tmp_path).tobytes()
    metadata = get("/metadata", run=".", name=projector.TENSOR_NAME).decode("utf-8")
    assert metadata == (tmp_path / "metadata.tsv").read_text(encoding="utf-8")
