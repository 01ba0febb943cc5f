"""Directories a sandbox's per-run uids can reach, which pytest's own (mode 0700) are not."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def fresh_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A new directory under the system's temp dir (every uid can traverse it) or ``parent``,
    removed with all it holds on leaving."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
