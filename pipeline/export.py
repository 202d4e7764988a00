"""Exporting the adapted table and its manifest into a run's ``export/`` folder, atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.adapted import AdaptedTable
from pipeline.atomic import staging_dir, write_text_atomic
from pipeline.formats import EXTENSIONS, FORMATS, save_table


def check_formats(formats: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError naming the first format that is not in :data:`FORMATS`."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"export.formats has unknown format {unknown[0]!r}; expected some of {', '.join(FORMATS)}")


def export_paths(directory: Path, formats: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Where each format is written: ``<directory>/embedding<ext>``."""
    check_formats(formats)
    return {fmt: directory / f"embedding{EXTENSIONS[fmt]}" for fmt in formats}


def export_table(adapted: AdaptedTable, directory: Path, formats: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Write the adapted table in every format of ``formats`` into ``directory``.

    All files are first written to a staging folder; only when every format succeeded do they move
    into ``directory``, so a failure leaves no partial export.
    """
    targets = export_paths(directory, formats)
    with staging_dir(directory) as stage:
        for fmt, path in targets.items():
            save_table(adapted.table, stage / path.name, fmt)
    return targets


def build_manifest(
    *,
    adapted: AdaptedTable,
    base_path: str,
    base_checksum: str,
    corpus_fingerprint: str,
    config_hash: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What an exported table came from, enough to trace and reload it."""
    return {
        "package_version": __version__,
        "base": {"path": base_path, "checksum": base_checksum, "rows": adapted.base_rows, "dim": adapted.table.dim},
        "adapted": {"rows": len(adapted.table), "checksum": adapted.table.checksum},
        "appended": [{"token": t, "index": i} for t, i in adapted.appended_indices.items()],
        "trained_rows": list(adapted.trained_rows),
        "corpus_fingerprint": corpus_fingerprint,
        "config_sha256": config_hash,
        **(extra or {}),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest as JSON, atomically."""
    write_text_atomic(path, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
