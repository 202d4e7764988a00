"""The one error type users see for bad input: it names the source, the line, the value and a remedy."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input from a user's file or config, reported on one line.

    The message reads ``<source>:<line>: <problem> (<hint>)`` so that editors and terminals can jump
    to the place, and a user knows what to change.
    """

    def __init__(self, source: str | Path, problem: str, *, line: int | None = None, hint: str = "") -> None:
        self.source = str(source)
        self.line = line
        self.problem = problem
        self.hint = hint
        where = self.source if line is None else f"{self.source}:{line}"
        text = f"{where}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text.replace("\n", " "))


class TrainingDivergedError(RuntimeError):
    """Fine-tuning's loss stopped being finite; the last good checkpoint is kept."""

    def __init__(self, step: int, loss: float, checkpoint: str | None) -> None:
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written"
        super().__init__(f"training diverged at step {step}: the loss is {loss}; {kept} (lower train.lr)")
        self.step = step
        self.checkpoint = checkpoint


class IntegrityError(RuntimeError):
    """A promise of the adapted table is broken: a frozen row moved, a base token left its index, or an
    appended token is not unique and new."""

    def __init__(self, table: str, problem: str) -> None:
        super().__init__(f"{table}: integrity check failed: {problem} (the table is not a faithful adaptation "
                         "of its base; do not use it)")
