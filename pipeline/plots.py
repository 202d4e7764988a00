"""PNG plots of a run: training curves, a PCA map of new tokens among their neighbours, row-norm histograms.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas attached, never through
``pyplot``: no global figure registry, no backend switch, nothing kept between calls. Each file is
rendered to a temporary name beside the target and renamed onto it, so a reader sees the old file or
the whole new one. A plot with nothing to draw writes no file and returns ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.atomic import replacing
from pipeline.table import EmbeddingTable

DPI = 120
NEW_LABELS = 25  # new tokens named on the PCA map; the rest are drawn unnamed
NEIGHBOUR_LABELS = 60  # neighbours named on the PCA map, nearest first, shared among the named new tokens
LABEL_CHARS = 24  # longer tokens are cut with an ellipsis
FENCE_IQR = 3.0  # norms beyond 3 interquartile ranges from a group's quartiles go into the edge bins
COLOURS = {"new": "#d62728", "shifted": "#ff7f0e", "table": "#7f7f7f"}
KIND_NAMES = {"new": "new token", "shifted": "shifted token", "table": "table token"}


def loss_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path | None:
    """Plot each metric series against the training step, one panel per series, steps shared.

    One panel per series rather than one axis (or a second y axis) because the series live on
    unrelated scales: a loss in the hundreds next to a cosine in [-1, 1] would flatten one of them,
    and a second axis only helps for two series. A panel whose positive values span two decades or
    more uses a log scale, so the slow late decline of a loss stays visible.

    Args:
        history: metric name (``train/loss``) -> ``(step, value)`` points; order does not matter.
        path: the PNG to write.

    Returns:
        ``path``, or ``None`` when no series has a point (no file is written).
    """
    series = [(name, points) for name, points in history.items() if len(points)]
    if not series:
        return None
    figure = Figure(figsize=(8.0, 1.0 + 2.2 * len(series)), layout="constrained")
    panels: list[Axes] = list(figure.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0])
    for ax, (name, points) in zip(panels, series, strict=True):
        steps = np.array([step for step, _ in points], dtype=np.int64)
        values = np.array([value for _, value in points], dtype=np.float64)
        order = np.argsort(steps, kind="stable")
        steps, values = steps[order], values[order]
        ax.plot(steps, values, color="#1f77b4", linewidth=1.3, marker="o" if len(steps) <= 50 else None,
                markersize=3)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() > 0 and finite.max() >= 100 * finite.min():
            ax.set_yscale("log")
        note = f"last {values[-1]:.4g} at step {steps[-1]:,}"
        if finite.size < values.size:
            note += f"; {values.size - finite.size} non-finite value(s) not drawn"
        ax.set_title(f"{name}   ({note})", loc="left", fontsize=10)
        ax.set_ylabel(name.rsplit("/", 1)[-1].replace("_", " "))
        ax.grid(True, alpha=0.3)
    panels[-1].set_xlabel("training step")
    figure.suptitle("Training curves")
    return _save(figure, path)


def pca_map(table: EmbeddingTable, new_tokens: Sequence[str], neighbours: Mapping[str, Sequence[str]],
            path: Path, *, shifted: Sequence[str] = ()) -> Path | None:
    """Plot the new tokens and their neighbours on the first two principal components of their vectors.

    The PCA is fitted on the plotted rows only (new tokens and the union of their neighbours), so the
    axes show how these rows differ, not the whole table. Points are coloured by kind: new (stars),
    shifted (fine-tuned table rows) and other table rows. The first :data:`NEW_LABELS` new tokens, in
    the order given (put the important ones first), are named and joined to their neighbours by faint
    lines; up to :data:`NEIGHBOUR_LABELS` of those neighbours are named in small type, nearest first.

    Args:
        table: the adapted table, holding the new tokens and their neighbours.
        new_tokens: the new tokens to place.
        neighbours: new token -> its neighbours, nearest first (e.g. from :func:`pipeline.neighbours.nearest`
            with the cosines dropped); new tokens without an entry are drawn alone.
        path: the PNG to write.
        shifted: table tokens that were fine-tuned; coloured as such when they are among the neighbours.

    Returns:
        ``path``, or ``None`` when ``new_tokens`` is empty (no file is written).

    Raises:
        KeyError: a new token or a neighbour is not in the table.
    """
    if not new_tokens:
        return None
    shifted_set = set(shifted)
    kinds: dict[str, str] = dict.fromkeys(new_tokens, "new")
    for token in new_tokens:
        for neighbour in neighbours.get(token, ()):
            kinds.setdefault(neighbour, "shifted" if neighbour in shifted_set else "table")
    tokens = list(kinds)
    rows = table.indices(tokens)
    if (rows < 0).any():
        missing = tokens[int(np.flatnonzero(rows < 0)[0])]
        raise KeyError(f"token {missing!r} not in table")
    coords, explained = pca_2d(np.asarray(table.matrix[rows], dtype=np.float64))
    where = {token: i for i, token in enumerate(tokens)}

    figure = Figure(figsize=(9.0, 7.5), layout="constrained")
    ax = figure.subplots()
    named_new = list(dict.fromkeys(new_tokens))[:NEW_LABELS]
    for token in named_new:
        for neighbour in neighbours.get(token, ()):
            a, b = coords[where[token]], coords[where[neighbour]]
            ax.plot([a[0], b[0]], [a[1], b[1]], color=COLOURS["new"], alpha=0.2, linewidth=0.6, zorder=1)
    kind_of = np.array([kinds[t] for t in tokens])
    style = {"table": ("o", 16.0), "shifted": ("D", 26.0), "new": ("*", 140.0)}
    for kind in ("table", "shifted", "new"):
        chosen = kind_of == kind
        if chosen.any():
            marker, size = style[kind]
            ax.scatter(coords[chosen, 0], coords[chosen, 1], s=size, marker=marker, color=COLOURS[kind],
                       edgecolors="white", linewidths=0.4, zorder=3 if kind == "new" else 2,
                       label=f"{KIND_NAMES[kind]} ({int(chosen.sum()):,})")
    for token in named_new:
        ax.annotate(_label(token), coords[where[token]], xytext=(4, 4), textcoords="offset points",
                    fontsize=9, fontweight="bold", color=COLOURS["new"], zorder=4, parse_math=False)
    named_neighbours = _nearest_first(named_new, neighbours, exclude=set(new_tokens), limit=NEIGHBOUR_LABELS)
    for token in named_neighbours:
        ax.annotate(_label(token), coords[where[token]], xytext=(3, -7), textcoords="offset points",
                    fontsize=6.5, color="#333333", zorder=4, parse_math=False)
    new_count = int((kind_of == "new").sum())
    subtitle = (f"named: {len(named_new)} of {new_count} new tokens, "
                f"{len(named_neighbours)} of {len(tokens) - new_count} neighbours")
    ax.set_title(f"New tokens among their nearest neighbours (PCA of {len(tokens):,} vectors)\n{subtitle}",
                 fontsize=11)
    ax.set_xlabel(f"first principal component ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"second principal component ({explained[1]:.0%} of the variance)")
    # beside the axes: loc="best" would measure every label and line first (a quarter of the map's time)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.grid(True, alpha=0.25)
    return _save(figure, path)


def pca_2d(matrix: npt.NDArray[np.floating]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Coordinates of ``matrix``'s rows on its first two principal components, and their variance shares.

    Computed by the SVD of the centred rows. Each component's sign is fixed so that its largest
    loading is positive, so the same rows always give the same picture. With fewer than two
    components (one row, or one dimension) the missing coordinates are zero.

    Returns:
        ``(rows, 2)`` coordinates and the share of the total variance each component explains
        (zeros when all rows are equal).
    """
    centred = np.asarray(matrix, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    coords = np.zeros((centred.shape[0], 2))
    coords[:, :k] = centred @ components.T
    variance = singular**2
    total = float(variance.sum())
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = variance[:k] / total
    return coords, explained


def norm_histogram(table_norms: npt.NDArray[np.floating], induced_norms: npt.NDArray[np.floating],
                   path: Path) -> Path | None:
    """Overlay the density histograms of the table rows' norms and the induced vectors' norms.

    Both use the same bins, and each is normalised to unit area, so a few hundred induced vectors
    compare with millions of table rows. Dashed lines mark the medians. The bins cover each group's
    values up to 3 interquartile ranges beyond its quartiles (Tukey's far-out fences); values past
    them are piled into the edge bins, so one stray vector does not squash the plot. Non-finite
    norms are left out.

    Args:
        table_norms: the table rows' L2 norms (see :func:`pipeline.table.row_norms`).
        induced_norms: the induced (new) vectors' L2 norms; may be empty.
        path: the PNG to write.

    Returns:
        ``path``, or ``None`` when neither group has a finite norm (no file is written).
    """
    groups = [
        (name, values[np.isfinite(values)], COLOURS[kind])
        for name, kind, values in (
            ("table rows", "table", np.asarray(table_norms, dtype=np.float64).ravel()),
            ("induced vectors", "new", np.asarray(induced_norms, dtype=np.float64).ravel()),
        )
    ]
    drawn = [group for group in groups if group[1].size]
    if not drawn:
        return None
    low, high = np.inf, -np.inf
    for _, values, _ in drawn:
        q1, q3 = np.percentile(values, [25, 75])
        low = min(low, max(float(values.min()), float(q1 - FENCE_IQR * (q3 - q1))))
        high = max(high, min(float(values.max()), float(q3 + FENCE_IQR * (q3 - q1))))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins: list[float] = np.linspace(low, high, 61).tolist()
    figure = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = figure.subplots()
    for name, values, colour in drawn:
        median = float(np.median(values))
        ax.hist(np.clip(values, low, high), bins=bins, density=True, color=colour, alpha=0.45,
                label=f"{name} (n={values.size:,}, median {median:.3g})")
        ax.axvline(median, color=colour, linestyle="--", linewidth=1.5)
    missing = [name for name, values, _ in groups if not values.size]
    title = "Vector norms: induced vectors against the table's rows"
    if missing:
        title += f"\n(no {' or '.join(missing)} to show)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("L2 norm (outliers beyond 3 IQR of the quartiles counted in the edge bins)")
    ax.set_ylabel("density (each group's area is 1)")
    ax.legend(fontsize=9)
    ax.grid(True, alpha=0.25)
    return _save(figure, path)


def _nearest_first(named: Sequence[str], neighbours: Mapping[str, Sequence[str]], *, exclude: set[str],
                   limit: int) -> list[str]:
    """Neighbours of the ``named`` tokens, rank by rank (every first neighbour, then every second...)."""
    chosen: dict[str, None] = {}
    lists = [list(neighbours.get(token, ())) for token in named]
    for rank in range(max((len(found) for found in lists), default=0)):
        for found in lists:
            if len(chosen) >= limit:
                return list(chosen)
            if rank < len(found) and found[rank] not in exclude:
                chosen.setdefault(found[rank])
    return list(chosen)


def _label(token: str) -> str:
    """``token`` as plot text: unprintable characters escaped, cut to :data:`LABEL_CHARS`.

    The labels are drawn with ``parse_math=False``, so a ``$`` in a token is shown, not read as mathtext.
    """
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in token)
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text


def _save(figure: Figure, path: Path) -> Path:
    """Render ``figure`` as a PNG at ``path`` through a temporary file and a rename."""
    FigureCanvasAgg(figure)  # attach an Agg canvas to this figure only: no pyplot, no global backend
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    return path
