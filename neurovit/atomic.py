"""Atomic text outputs: tables, JSON summaries and SWC files appear whole or not at all.

Each is written to a uniquely named hidden temporary file in the target's folder (same filesystem, so
the final rename is atomic; unique, so concurrent writers such as DDP ranks never share one) and renamed
into place; on any error (a full disk, a permission problem) the temporary file is removed. Volumes have
their own atomic writers in `neurovit.data.volumes`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj, **kwargs) -> Path:
    """`obj` as indented JSON (plus a newline), atomically."""
    return write_text(path, json.dumps(obj, indent=2, **kwargs) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[dict], fieldnames: Sequence[str]) -> Path:
    """Rows of dicts as CSV with a header (extra keys ignored), atomically."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())
