"""Gather an offline folder of natural images for `neurovit pretrain` (the ablation's "natural" source).

    python -m neurovit.ablate.natural --out data/natural [--max-side 1024]

Sources, all local: scikit-image's bundled photographs, and, when installed, the Debian desktop background
packages (`apt-get install gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers ukui-wallpapers`:
about 80 distinct photos and artworks under /usr/share/backgrounds and /usr/share/wallpapers). Plasma ships
one picture in several resolutions and GNOME in light/dark variants: only the largest file of each picture
is kept, and exact duplicates (same 16 × 16 thumbnail) are dropped. Every image is written as a JPEG of at
most `max_side` pixels. This is for experiments; nothing in the product requires these packages.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

WALLPAPER_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
RASTER = (".jpg", ".jpeg", ".png", ".webp")


def _picture_key(path: Path) -> str:
    """Files showing the same picture share a key: Plasma's WALLPAPER/contents/images*/WxH.jpg → WALLPAPER;
    GNOME's NAME-l / NAME-d → NAME."""
    parts = path.parts
    if "contents" in parts:
        return str(Path(*parts[: parts.index("contents")]))
    return str(path.with_name(re.sub(r"[-_](l|d|light|dark|day|night|morning)$", "", path.stem)))


def wallpaper_files(dirs=WALLPAPER_DIRS) -> list[Path]:
    """The largest raster file of each distinct picture under `dirs`."""
    best: dict[str, Path] = {}
    for d in map(Path, dirs):
        if not d.is_dir():
            continue
        for p in d.rglob("*"):
            if p.is_file() and p.suffix.lower() in RASTER:
                k = _picture_key(p)
                if k not in best or p.stat().st_size > best[k].stat().st_size:
                    best[k] = p
    return sorted(best.values())


def gather(out: Path, max_side: int = 1024, dirs=WALLPAPER_DIRS) -> list[Path]:
    """Write the images into `out` (created); returns the written files."""
    import skimage.data
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    written = []

    def save(img, name: str) -> None:
        img = img.convert("RGB")
        thumb = np.asarray(img.convert("L").resize((16, 16))).tobytes()
        if thumb in seen:
            return
        seen.add(thumb)
        img.thumbnail((max_side, max_side))
        path = out / f"{name}.jpg"
        img.save(path, quality=90)
        written.append(path)

    from neurovit.ablate.source2d import NATURAL_IMAGES  # the photos bundled in the wheel (no download)

    for name in NATURAL_IMAGES:
        save(Image.fromarray(np.asarray(getattr(skimage.data, name)())), f"skimage_{name}")
    for p in wallpaper_files(dirs):
        try:
            with Image.open(p) as im:
                im.draft("RGB", (max_side, max_side))
                save(im, "wall_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(_picture_key(p)).name)))
        except Exception as exc:  # a broken file in a system package: skip it, say so
            print(f"skipped {p}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m neurovit.ablate.natural", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-side", type=int, default=1024)
    args = ap.parse_args(argv)
    files = gather(args.out, args.max_side)
    n_wall = sum(f.name.startswith("wall_") for f in files)
    print(f"wrote {len(files)} images to {args.out} ({len(files) - n_wall} scikit-image photos, {n_wall} desktop "
          "backgrounds)" + ("" if n_wall else "; install gnome-backgrounds mate-backgrounds "
                            "plasma-workspace-wallpapers ukui-wallpapers for ~80 more"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
