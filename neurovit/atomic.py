"""Atomic file outputs: stacks (TIFF, Vaa3D), tables, JSON summaries and SWC files appear whole or not at all.

`atomic_open` is the one mechanism: a uniquely named hidden temporary file in the target's folder (same
filesystem, so the final rename is atomic; unique, so concurrent writers such as DDP ranks never share
one), flushed to disk and renamed into place; on any error (a full disk, a permission problem) the
temporary file is removed. Memory-mapped and chunked outputs (`neurovit.data.volumes.create_output`)
follow the same rule with their own temporary names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: it appears under `path` only when the block ends without
    an exception (flushed and fsynced first); otherwise the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    with atomic_open(path) as fh:
        fh.write(text.encode("utf-8"))
    return Path(path)


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
