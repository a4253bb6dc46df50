"""Morphology: SWC reading (dialects, validation), writing, and geometric operations.

A `Morphology` holds N nodes in topological order (every parent before its children), with
`parent[i] == -1` for roots. Coordinates are SWC x, y, z (µm, or voxels when `units == "voxel"`);
image arrays elsewhere in neurovit are (Z, Y, X) — convert with `xyz_to_zyx` / `zyx_to_xyz`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurovit.errors import SWCError

# Standard SWC structure identifiers.
SOMA, AXON, BASAL, APICAL, FORK, END = 1, 2, 3, 4, 5, 6
UNIT_WORDS = {"um": "micrometres", "voxel": "voxels"}  # a Morphology's coordinates, as the SWC header words them
UNITS = tuple(UNIT_WORDS)
TYPE_NAMES = {0: "undefined", 1: "soma", 2: "axon", 3: "basal dendrite", 4: "apical dendrite",
              5: "fork point", 6: "end point", 7: "custom"}


def xyz_to_zyx(points: np.ndarray) -> np.ndarray:
    """SWC (x, y, z) columns → array-axis order (z, y, x); the one place this swap happens."""
    return np.asarray(points)[..., ::-1]


def zyx_to_xyz(points: np.ndarray) -> np.ndarray:
    """Array-axis order (z, y, x) → SWC (x, y, z) columns."""
    return np.asarray(points)[..., ::-1]


@dataclass
class Morphology:
    """A neuron tree (or forest): parents precede children, `parent == -1` marks roots."""

    xyz: np.ndarray  # (N, 3) float64, SWC x, y, z
    radius: np.ndarray  # (N,) float64, >= 0
    types: np.ndarray  # (N,) int
    parent: np.ndarray  # (N,) int, index into the arrays, -1 for roots
    units: str = "um"
    source: str | None = None
    header: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.xyz = np.asarray(self.xyz, dtype=np.float64).reshape(-1, 3)
        n = len(self.xyz)
        self.radius = np.asarray(self.radius, dtype=np.float64).reshape(n)
        self.types = np.asarray(self.types, dtype=np.int64).reshape(n)
        self.parent = np.asarray(self.parent, dtype=np.int64).reshape(n)
        if n and (self.parent >= np.arange(n)).any():
            raise ValueError("Morphology nodes must be in topological order (parent index < node index)")
        if self.units not in UNITS:  # every µm spelling is 'um' once read (read_swc); metrics rely on it
            raise ValueError(f"Morphology units must be one of {UNITS}, not {self.units!r}")

    # ----------------------------------------------------------------- structure
    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def n_nodes(self) -> int:
        return len(self.xyz)

    @property
    def roots(self) -> np.ndarray:
        return np.flatnonzero(self.parent < 0)

    @property
    def n_children(self) -> np.ndarray:
        """Number of children of every node."""
        kids = self.parent[self.parent >= 0]
        return np.bincount(kids, minlength=self.n_nodes)

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) array of (child, parent) index pairs."""
        child = np.flatnonzero(self.parent >= 0)
        return np.stack([child, self.parent[child]], axis=1)

    def edge_lengths(self) -> np.ndarray:
        e = self.edges
        return np.linalg.norm(self.xyz[e[:, 0]] - self.xyz[e[:, 1]], axis=1)

    @property
    def total_length(self) -> float:
        """Sum of edge lengths (in the morphology's units)."""
        return float(self.edge_lengths().sum())

    @property
    def n_branch_points(self) -> int:
        return int((self.n_children >= 2).sum())

    @property
    def n_tips(self) -> int:
        return int((self.n_children == 0).sum())

    @property
    def n_branches(self) -> int:
        """Unbranched sections: paths that start at a root or branch point and end at the next one or a tip."""
        nc = self.n_children
        e = self.edges
        if len(e) == 0:
            return 0
        starts = (self.parent[e[:, 1]] < 0) | (nc[e[:, 1]] >= 2)
        return int(starts.sum())

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned (min, max) of node positions grown by their radii, SWC x,y,z order."""
        if self.n_nodes == 0:
            raise ValueError("empty morphology has no bounds")
        r = self.radius[:, None]
        return (self.xyz - r).min(axis=0), (self.xyz + r).max(axis=0)

    def summary(self) -> dict:
        """Counts that people quote for a reconstruction."""
        return {"nodes": self.n_nodes, "roots": len(self.roots), "branch_points": self.n_branch_points,
                "branches": self.n_branches, "tips": self.n_tips, "length": round(self.total_length, 3),
                "units": self.units}

    def copy(self, **changes) -> Morphology:
        base = dict(xyz=self.xyz.copy(), radius=self.radius.copy(), types=self.types.copy(),
                    parent=self.parent.copy(), units=self.units, source=self.source, header=list(self.header))
        base.update(changes)
        return Morphology(**base)

    # ----------------------------------------------------------------- geometry
    def scale(self, factor: float | Sequence[float], *, radius: bool | float = True,
              units: str | None = None) -> Morphology:
        """Multiply x, y, z by `factor` (scalar or per-axis x,y,z).

        Radii are scaled by a scalar factor, by `radius` when it is a number, or — for per-axis factors —
        by the mean of the x and y factors (radii live in the imaging plane); `radius=False` keeps them.
        """
        f = np.broadcast_to(np.asarray(factor, dtype=np.float64), (3,))
        if isinstance(radius, bool):
            rf = float(np.mean(f[:2])) if radius else 1.0
        else:
            rf = float(radius)
        return self.copy(xyz=self.xyz * f, radius=self.radius * rf, units=units or self.units)

    def to_voxels(self, voxel_size: Sequence[float]) -> Morphology:
        """µm → voxel units of an image with voxel size (z, y, x): x,y,z become column, row and slice
        coordinates and radii are expressed in x-voxels (in-plane)."""
        vz, vy, vx = (float(v) for v in voxel_size)
        if self.units == "voxel":
            return self.copy()
        return self.scale((1 / vx, 1 / vy, 1 / vz), radius=1 / vx, units="voxel")

    def to_um(self, voxel_size: Sequence[float]) -> Morphology:
        """Voxel units (see `to_voxels`) → µm."""
        vz, vy, vx = (float(v) for v in voxel_size)
        if self.units == "um":
            return self.copy()
        return self.scale((vx, vy, vz), radius=vx, units="um")

    def translate(self, offset: Sequence[float]) -> Morphology:
        """Add an (x, y, z) offset to every node."""
        return self.copy(xyz=self.xyz + np.asarray(offset, dtype=np.float64).reshape(3))

    def crop(self, lo: Sequence[float], hi: Sequence[float]) -> Morphology:
        """Keep the part inside the box lo <= xyz <= hi (x,y,z); edges leaving the box end at its face.

        A kept node whose parent lies outside becomes a root attached to a new node on the box face,
        so neurites run up to the boundary instead of stopping one edge short.
        """
        lo = np.asarray(lo, dtype=np.float64).reshape(3)
        hi = np.asarray(hi, dtype=np.float64).reshape(3)
        inside = ((self.xyz >= lo) & (self.xyz <= hi)).all(axis=1)
        xyz, rad, typ, par = [], [], [], []
        new_index = np.full(self.n_nodes, -1, dtype=np.int64)

        def add(p, r, t, parent):
            xyz.append(p)
            rad.append(r)
            typ.append(t)
            par.append(parent)
            return len(xyz) - 1

        for i in range(self.n_nodes):
            p = self.parent[i]
            if inside[i]:
                if p >= 0 and inside[p]:
                    new_index[i] = add(self.xyz[i], self.radius[i], self.types[i], new_index[p])
                elif p >= 0:  # parent outside: enter through the face
                    t = _segment_box_exit(self.xyz[i], self.xyz[p], lo, hi)
                    r = self.radius[i] + t * (self.radius[p] - self.radius[i])
                    face = add(self.xyz[i] + t * (self.xyz[p] - self.xyz[i]), r, self.types[i], -1)
                    new_index[i] = add(self.xyz[i], self.radius[i], self.types[i], face)
                else:
                    new_index[i] = add(self.xyz[i], self.radius[i], self.types[i], -1)
            elif p >= 0 and inside[p]:  # leaving the box: end on the face
                t = _segment_box_exit(self.xyz[p], self.xyz[i], lo, hi)
                r = self.radius[p] + t * (self.radius[i] - self.radius[p])
                add(self.xyz[p] + t * (self.xyz[i] - self.xyz[p]), r, self.types[i], new_index[p])
        return Morphology(np.array(xyz).reshape(-1, 3), np.array(rad), np.array(typ, dtype=np.int64),
                          np.array(par, dtype=np.int64), units=self.units, source=self.source,
                          header=list(self.header))

    def resample(self, spacing: float) -> Morphology:
        """Subdivide every edge longer than `spacing` into equal pieces no longer than `spacing`.

        New nodes interpolate position and radius linearly and take the child's type; existing nodes stay.
        On edges leaving a soma the new nodes keep the child's radius (the neurite's own calibre).
        """
        if spacing <= 0:
            raise ValueError(f"resample spacing must be positive, got {spacing}")
        n = self.n_nodes
        lengths = np.zeros(n)
        has_parent = self.parent >= 0
        lengths[has_parent] = np.linalg.norm(self.xyz[has_parent] - self.xyz[self.parent[has_parent]], axis=1)
        pieces = np.maximum(1, np.ceil(lengths / spacing - 1e-9).astype(np.int64))
        pieces[~has_parent] = 1
        extra = pieces - 1  # nodes inserted between node i and its parent
        # Every original node i is preceded by its inserted nodes (closest to the parent first).
        new_pos = np.cumsum(pieces) - 1  # new index of original node i
        total = int(pieces.sum())
        xyz = np.empty((total, 3))
        rad = np.empty(total)
        typ = np.empty(total, dtype=np.int64)
        par = np.empty(total, dtype=np.int64)
        xyz[new_pos], rad[new_pos], typ[new_pos] = self.xyz, self.radius, self.types
        par[new_pos] = np.where(has_parent, new_pos - 1, -1)
        par[new_pos[has_parent & (extra == 0)]] = new_pos[self.parent[has_parent & (extra == 0)]]
        idx = np.flatnonzero(extra > 0)
        if len(idx):
            counts = extra[idx]
            node = np.repeat(idx, counts)
            k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1  # 1..extra
            t = k / np.repeat(pieces[idx], counts)  # fraction from the parent towards the child
            pa = self.parent[node]
            pos = new_pos[node] - np.repeat(counts, counts) + k - 1
            xyz[pos] = self.xyz[pa] + t[:, None] * (self.xyz[node] - self.xyz[pa])
            # a neurite leaves a soma with its own radius (as the renderer draws it), not a cone
            r_start = np.where((self.types[pa] == SOMA) & (self.types[node] != SOMA), self.radius[node],
                               self.radius[pa])
            rad[pos] = r_start + t * (self.radius[node] - r_start)
            typ[pos] = self.types[node]
            par[pos] = np.where(k == 1, new_pos[pa], pos - 1)
        return Morphology(xyz, rad, typ, par, units=self.units, source=self.source, header=list(self.header))


def _segment_box_exit(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Largest t in [0, 1] with a + t (b - a) inside the box, for a inside (Liang–Barsky clip)."""
    d = b - a
    t_max = 1.0
    for k in range(3):
        if d[k] > 0:
            t_max = min(t_max, (hi[k] - a[k]) / d[k])
        elif d[k] < 0:
            t_max = min(t_max, (lo[k] - a[k]) / d[k])
    return max(0.0, t_max)


# --------------------------------------------------------------------------- reading
def _parse_number(text: str, what: str, path, line_no: int, integer: bool) -> float | int:
    if integer:
        try:
            return int(text)  # exact, even for ids beyond 2**53
        except ValueError:
            pass
    try:
        value = float(text)
    except ValueError:
        raise SWCError(f"{what} {text!r} is not a number", path, line_no) from None
    if integer:
        if not math.isfinite(value) or value != int(value):
            raise SWCError(f"{what} {text!r} is not an integer", path, line_no)
        return int(value)
    return value


_TYPE_LIMIT = 2**31  # structure types are small codes; anything this large is a corrupt column
_BOM = "\ufeff"


def _units_from_header(header: Sequence[str]) -> str | None:
    """"um" or "voxel" from a ``# units: ...`` comment (as `format_swc` writes it), else None; ValueError
    for any other unit (millimetres or nanometres read as µm would be silently wrong)."""
    for text in header:
        body = text.lstrip("#").strip().lower()
        if body.startswith("units:"):
            value = body.split(":", 1)[1].strip()
            if value.startswith(("um", "µm", "micro")):
                return "um"
            if value.startswith("voxel"):
                return "voxel"
            raise ValueError(f"the header {text!r} names units neurovit does not read (µm or voxel): convert "
                             "the coordinates to µm, or remove the line and pass the units")
    return None


def parse_swc(lines: Iterable[str], *, path: str | Path | None = None, fork_end: str = "auto",
              units: str | None = None, default_units: str = "um") -> Morphology:
    """Parse SWC text lines into a Morphology (see `read_swc`); a leading byte-order mark is ignored."""
    if fork_end not in ("auto", "topology", "keep"):
        raise ValueError(f"fork_end must be 'auto', 'topology' or 'keep', got {fork_end!r}")
    header: list[str] = []
    ids: list[int] = []
    types_list: list[int] = []
    parent_ids: list[int] = []
    rows: list[tuple[float, float, float, float]] = []
    line_of: list[int] = []
    for line_no, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip(_BOM).strip()
        if not text:
            continue
        if text.startswith("#"):
            header.append(text)
            continue
        fields = text.replace(",", " ").split()
        if len(fields) < 7:
            raise SWCError(f"expected 7 columns (id type x y z radius parent), found {len(fields)}: {text!r}",
                           path, line_no)
        nid = _parse_number(fields[0], "node id", path, line_no, True)
        if nid < 0:
            raise SWCError(f"node id {nid} is negative; ids must be positive integers "
                           "(parent -1 marks a root)", path, line_no)
        typ = _parse_number(fields[1], "type", path, line_no, True)
        if not -_TYPE_LIMIT < typ < _TYPE_LIMIT:
            raise SWCError(f"type {fields[1]!r} is out of range (SWC types are small integers, e.g. 1 soma, "
                           "2 axon, 3 dendrite)", path, line_no)
        x, y, z, r = (_parse_number(f, name, path, line_no, False)
                      for f, name in zip(fields[2:6], ("x", "y", "z", "radius")))
        par = _parse_number(fields[6], "parent id", path, line_no, True)
        if not all(math.isfinite(v) for v in (x, y, z)):
            raise SWCError(f"coordinate is not finite: {text!r}", path, line_no)
        ids.append(nid)
        types_list.append(typ)
        parent_ids.append(par)
        rows.append((x, y, z, r))
        line_of.append(line_no)
    if not rows:
        raise SWCError("no nodes found (only comments or blank lines)", path)

    index: dict[int, int] = {}
    for k, nid in enumerate(ids):
        if nid in index:
            raise SWCError(f"duplicate node id {nid} (first defined on line {line_of[index[nid]]})", path,
                           line_of[k])
        index[nid] = k
    n = len(rows)
    arr = np.array(rows, dtype=np.float64)
    parent = np.full(n, -1, dtype=np.int64)
    for k in range(n):
        pid = parent_ids[k]  # Python ints: a huge parent id is "missing", never wrapped to a negative
        if pid < 0:
            continue
        if pid == ids[k]:
            raise SWCError(f"node {ids[k]} is its own parent (a cycle)", path, line_of[k])
        if pid not in index:
            raise SWCError(f"parent id {pid} of node {ids[k]} does not exist in the file", path, line_of[k])
        parent[k] = index[pid]

    order = _topological_order(parent)
    if len(order) < n:
        in_cycle = np.setdiff1d(np.arange(n), order)
        k = int(in_cycle[0])
        members = ", ".join(str(ids[i]) for i in in_cycle[:8])
        raise SWCError(f"the parent links form a cycle (nodes {members}{' ...' if len(in_cycle) > 8 else ''}); "
                       "every node must lead to a root with parent -1", path, line_of[k])
    new_index = np.empty(n, dtype=np.int64)
    new_index[order] = np.arange(n)
    parent = np.where(parent[order] >= 0, new_index[parent[order]], -1)
    types = np.array(types_list, dtype=np.int64)[order]
    xyz = arr[order, 0:3]
    radius = arr[order, 3]
    radius = np.where(np.isfinite(radius) & (radius > 0), radius, 0.0)  # missing radii → 0 (renderers clamp)
    if units is None:
        try:
            units = _units_from_header(header) or default_units
        except ValueError as exc:
            raise SWCError(str(exc), path) from None
    morph = Morphology(xyz, radius, types, parent, units=units,
                       source=None if path is None else str(path), header=header)
    if fork_end != "keep" and (fork_end == "topology" or _looks_like_fork_end_dialect(morph)):
        morph.types = _resolve_topology_types(morph)
    return morph


def read_swc(path: str | Path, *, fork_end: str = "auto", units: str | None = None,
             default_units: str = "um") -> Morphology:
    """Read an SWC / ESWC file robustly.

    Accepts comment and Vaa3D `##n,type,...` headers, extra ESWC columns (first 7 used), arbitrary ids
    with gaps, several roots, parents listed after children (nodes are re-ordered parents-first),
    missing radii (0, negative or nan → 0; renderers clamp to half a voxel). `fork_end` handles the
    dialect where types 5/6 mark fork/end points instead of a neurite kind: "auto" detects it, "topology"
    forces it, "keep" leaves the types. `units` ("um" or "voxel") forces the units; otherwise a ``# units:``
    header decides (as `write_swc` writes it), else `default_units` (a dataset's `swc_units`). A UTF-8 byte-order mark is ignored. Node ids must be
    non-negative integers (0 is accepted, as some tools start there); coordinates must be finite.
    Malformed input raises SWCError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise SWCError("file not found", path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise SWCError(f"cannot read file: {exc}", path) from None
    return parse_swc(text.splitlines(), path=path, fork_end=fork_end, units=units, default_units=default_units)


def _topological_order(parent: np.ndarray) -> np.ndarray:
    """Breadth-first order from the roots; nodes on a cycle are never reached and are left out."""
    n = len(parent)
    has_parent = parent >= 0
    child = np.flatnonzero(has_parent)
    by_parent = np.argsort(parent[child], kind="stable")
    child_sorted = child[by_parent]
    starts = np.searchsorted(parent[child_sorted], np.arange(n + 1))
    frontier = np.flatnonzero(~has_parent)
    order = [frontier]
    while len(frontier):
        nxt = [child_sorted[starts[p]:starts[p + 1]] for p in frontier]
        frontier = np.concatenate(nxt) if nxt else np.empty(0, dtype=np.int64)
        if len(frontier):
            order.append(frontier)
    return np.concatenate(order)


def _looks_like_fork_end_dialect(m: Morphology) -> bool:
    """Types 5/6 sit (almost) only on branch points / tips: they encode topology, not neurite kind."""
    is5, is6 = m.types == FORK, m.types == END
    if not (is5.any() or is6.any()):
        return False
    nc = m.n_children
    hits = int((nc[is5] >= 2).sum() + (nc[is6] == 0).sum())
    return hits >= 0.9 * int(is5.sum() + is6.sum())


def _resolve_topology_types(m: Morphology) -> np.ndarray:
    """Replace fork/end types (5/6) by the nearest ancestor's neurite type, else a descendant's (and then
    that one's below it), else 0. Which nodes are unresolved is kept apart from the types, so a file's
    own negative type is never taken for a placeholder."""
    types = m.types.copy()
    unresolved = (types == FORK) | (types == END)

    def from_parents() -> None:  # parents first, so ancestors are already resolved
        for i in np.flatnonzero(unresolved):
            p = m.parent[i]
            if p >= 0 and not unresolved[p] and types[p] != SOMA:
                types[i], unresolved[i] = types[p], False

    from_parents()
    for i in range(m.n_nodes - 1, -1, -1):  # still unresolved (e.g. a fork on the soma): a child's type
        p = m.parent[i]
        if p >= 0 and unresolved[p] and not unresolved[i]:
            types[p], unresolved[p] = types[i], False
    from_parents()  # the rest of a subtree below a fork resolved from a child
    types[unresolved] = 0
    return types


# --------------------------------------------------------------------------- writing
def format_swc(m: Morphology, *, comments: Sequence[str] = ()) -> str:
    """SWC text with a header (source, units, counts) and ids 1..N, parents first."""
    lines = ["# neurovit SWC", f"# source: {m.source or 'unknown'}", f"# units: {m.units} ({UNIT_WORDS[m.units]})"]
    lines += [f"# {c}" if not c.startswith("#") else c for c in comments]
    lines.append("# id type x y z radius parent")
    pid = np.where(m.parent >= 0, m.parent + 1, -1)
    for i in range(m.n_nodes):
        x, y, z = m.xyz[i]
        lines.append(f"{i + 1} {int(m.types[i])} {x:.4f} {y:.4f} {z:.4f} {m.radius[i]:.4f} {int(pid[i])}")
    return "\n".join(lines) + "\n"


def write_swc(m: Morphology, path: str | Path, *, comments: Sequence[str] = ()) -> Path:
    """Write `m` to `path` atomically (a uniquely named temporary file in the same folder, then rename, so
    concurrent writers, e.g. DDP ranks scoring the same volume, never share a temporary file); returns
    the path. On any error the temporary file is removed."""
    from neurovit.atomic import write_text

    return write_text(path, format_swc(m, comments=comments))
