"""What every benchmark measures the same way: peak memory of a child process, warm inputs, versions."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mib() -> float | None:
    """``VmHWM`` of this process (Linux), or None where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_json(command: list[str], action: str) -> Any:
    """Run a benchmark child (a fresh process, so its peak memory is its own); return the JSON it prints last."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"child {action!r} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_page_cache(*paths: Path) -> None:
    """Read the files once so every run starts with them in the page cache (no large buffers)."""
    buffer = bytearray(1 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


def versions() -> str:
    """Python, numpy, gensim and TensorFlow versions, from package metadata (nothing imported)."""
    from importlib import metadata

    found = [f"Python {platform.python_version()}"]
    for name in ("numpy", "gensim", "tensorflow"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} absent")
    return ", ".join(found)
