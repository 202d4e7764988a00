"""``report.md``: a run told for a person — what was loaded, what was chosen and why, before and after, warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Neighbours = Mapping[str, tuple[Sequence[tuple[str, float]], Sequence[tuple[str, float]]]]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):  # counts logged as floats (MLflow metrics) read as counts
        return f"{value:,.0f}" if abs(value) >= 1000 or (value.is_integer() and abs(value) > 1) else f"{value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; None shows as a dash, pipes in cells are escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class RunReport:
    """Everything ``report.md`` says; plain values, so any task can fill it.

    Attributes:
        title: the first heading.
        loaded: facts about the inputs, in order (``("base table", "glove.txt, 400,000 x 300")``).
        chosen: chosen tokens as rows of ``chosen_header`` (token, reason, count, score, method).
        chosen_header: the columns of ``chosen``.
        chosen_total: how many tokens were chosen in all (``chosen`` may show only the first).
        comparison: rows ``(metric, before, after)``.
        neighbours: token -> (nearest rows before, after), each ``(token, cosine)``.
        plots: file names of images beside the report, with their captions.
        warnings: what the run warned about.
        outputs: facts about what was written, in order.
    """

    title: str
    loaded: Sequence[tuple[str, str]] = ()
    chosen: Sequence[Sequence[Any]] = ()
    chosen_header: Sequence[str] = ("token", "reason", "count", "score", "method")
    chosen_total: int = 0
    comparison: Sequence[tuple[str, float | None, float | None]] = ()
    neighbours: Neighbours = field(default_factory=dict)
    plots: Sequence[tuple[str, str]] = ()
    warnings: Sequence[str] = ()
    outputs: Sequence[tuple[str, str]] = ()

    def markdown(self) -> str:
        """The report as Markdown."""
        parts = [f"# {self.title}"]
        if self.loaded:
            parts += ["## What was loaded", "\n".join(f"- **{k}**: {v}" for k, v in self.loaded)]
        if self.chosen_total or self.chosen:
            shown = f" (shown: {len(self.chosen):,} of the {self.chosen_total:,} chosen)" \
                if len(self.chosen) < self.chosen_total else ""
            parts += ["## What was chosen, and why",
                      "New tokens are frequent corpus tokens the table lacks; shifted tokens are table tokens "
                      "the domain uses differently (score: distance of their domain contexts from their "
                      f"pretrained vector, times their frequency lift). Every other row is frozen{shown}.",
                      markdown_table(self.chosen_header, self.chosen)]
        if self.comparison:
            rows = [(name, b, a, None if b is None or a is None else a - b) for name, b, a in self.comparison]
            parts += ["## Before and after", markdown_table(("metric", "before", "after", "change"), rows)]
        if self.neighbours:
            lines = ["## Neighbours", "The nearest rows of each token's vector before fine-tuning (its induced "
                     "vector if new, its pretrained row if shifted) and after, by cosine."]
            for token, (before, after) in self.neighbours.items():
                lines.append(f"- **{token}**")
                lines.append("  - before: " + (", ".join(f"{t} ({s:.2f})" for t, s in before) or "–"))
                lines.append("  - after: " + (", ".join(f"{t} ({s:.2f})" for t, s in after) or "–"))
            parts.append("\n".join(lines))
        if self.plots:
            parts += ["## Plots", "\n\n".join(f"![{caption}]({name})\n\n*{caption}*" for name, caption in self.plots)]
        parts += ["## Warnings", "\n".join(f"- {w}" for w in self.warnings) if self.warnings else "None."]
        if self.outputs:
            parts += ["## Outputs", "\n".join(f"- **{k}**: {v}" for k, v in self.outputs)]
        return "\n\n".join(parts) + "\n"


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage().splitlines()[0])


@contextmanager
def collected_warnings(*loggers: str) -> Iterator[list[str]]:
    """Gather the first line of every WARNING (or worse) the named loggers emit while the block runs."""
    found: list[str] = []
    handler = _Collect(found)
    targets = [logging.getLogger(name) for name in loggers or ("",)]
    for target in targets:
        target.addHandler(handler)
    try:
        yield found
    finally:
        for target in targets:
            target.removeHandler(handler)
