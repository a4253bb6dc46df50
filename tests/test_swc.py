"""SWC reading (dialects, malformed input), writing and geometry operations."""

from __future__ import annotations

import numpy as np
import pytest

from neurovit.data.swc import Morphology, parse_swc, read_swc, write_swc
from neurovit.errors import SWCError


def test_reads_tiny_tree_parents_first(tiny_swc):
    m = read_swc(tiny_swc)
    assert m.n_nodes == 6
    assert (m.parent < np.arange(6)).all()  # parents precede children
    assert m.parent[0] == -1 and m.types[0] == 1  # soma root comes first
    assert m.n_branch_points == 2  # soma (2 children) and node 13 (2 children)
    assert m.n_tips == 3
    assert m.n_branches == 4  # soma→20, soma→12→13, 13→15, 13→16
    expected = 2 + 2 + 2 + np.hypot(2, 1) + 2  # 10-20, 10-12, 12-13, 13-16, 13-15
    assert m.total_length == pytest.approx(expected)


def test_round_trip_preserves_tree(tiny_swc, tmp_path):
    m = read_swc(tiny_swc)
    out = write_swc(m, tmp_path / "out.swc", comments=["hello"])
    text = out.read_text()
    assert text.startswith("# neurovit SWC")
    assert "# units: um" in text and "# hello" in text
    body = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert [int(b[0]) for b in body] == list(range(1, 7))  # ids 1..N
    assert all(int(b[6]) < int(b[0]) for b in body)  # parents first
    m2 = read_swc(out)
    np.testing.assert_allclose(m2.xyz, m.xyz, atol=1e-4)
    np.testing.assert_allclose(m2.radius, m.radius, atol=1e-4)
    np.testing.assert_array_equal(m2.parent, m.parent)
    np.testing.assert_array_equal(m2.types, m.types)


def test_eswc_extra_columns_and_commas_and_several_roots():
    text = ["1,1,0,0,0,2,-1,0,0", "2 3 1 0 0 1 1 99 98 97", "5 3 9 9 9 1 -1 x y"]
    m = parse_swc(text)
    assert m.n_nodes == 3
    assert len(m.roots) == 2
    np.testing.assert_allclose(m.xyz[m.roots], [[0, 0, 0], [9, 9, 9]])  # extra columns ignored
    np.testing.assert_allclose(m.xyz[m.parent >= 0], [[1, 0, 0]])


def test_missing_radii_become_zero():
    m = parse_swc(["1 1 0 0 0 0 -1", "2 3 1 0 0 -1 1", "3 3 2 0 0 nan 2", "4 3 3 0 0 0.7 3"])
    np.testing.assert_allclose(m.radius, [0, 0, 0, 0.7])


def test_fork_end_dialect_resolved_to_neurite_type():
    # Old dialect: 5 marks the fork, 6 the end points; they should inherit the dendrite type 3.
    text = ["1 1 0 0 0 3 -1", "2 3 1 0 0 1 1", "3 5 2 0 0 1 2", "4 3 3 1 0 1 3", "5 6 4 1 0 1 4",
            "6 6 3 -1 0 1 3"]
    m = parse_swc(text)
    assert set(m.types.tolist()) == {1, 3}
    kept = parse_swc(text, fork_end="keep")
    assert 5 in kept.types and 6 in kept.types


def test_fork_end_dialect_below_a_fork_on_the_soma_and_a_files_own_negative_type():
    """A fork on the soma takes its child's neurite type, and so do the end points below it (they came out
    as 0, undefined, when the fork was resolved only after them); a file's own type -1 is kept and passed
    down, never mistaken for an unresolved placeholder."""
    on_soma = ["1 1 0 0 0 1 -1", "2 5 1 0 0 1 1", "3 6 2 1 0 1 2", "4 3 2 -1 0 1 2"]
    assert parse_swc(on_soma).types.tolist() == [1, 3, 3, 3]
    negative = ["1 1 0 0 0 1 -1", "2 3 1 0 0 1 1", "3 5 2 0 0 1 2", "4 -1 3 0 0 1 3", "5 6 4 0 0 1 4",
                "6 6 4 1 0 1 3"]
    assert parse_swc(negative).types.tolist() == [1, 3, 3, -1, 3, -1]  # breadth-first: node 6 before 5

def test_types_5_6_used_as_neurite_kinds_are_kept():
    # Custom types 5/6 on ordinary nodes (not forks/ends) are not the topology dialect.
    text = ["1 1 0 0 0 3 -1", "2 5 1 0 0 1 1", "3 5 2 0 0 1 2", "4 5 3 0 0 1 3", "5 3 4 0 0 1 4"]
    assert 5 in parse_swc(text).types


@pytest.mark.parametrize("lines, message, line_no", [
    (["1 1 0 0 0 1 -1", "2 3 a 0 0 1 1"], r"x 'a' is not a number", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 1 1"], r"expected 7 columns .* found 6", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 0 1 7"], r"parent id 7 of node 2 does not exist", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 0 1 3", "3 3 0 0 0 1 2"], r"cycle", 2),
    (["1 1 0 0 0 1 1"], r"its own parent", 1),
    (["1 1 0 0 0 1 -1", "1 3 0 0 0 1 1"], r"duplicate node id 1 \(first defined on line 1\)", 2),
    (["1.5 1 0 0 0 1 -1"], r"node id '1.5' is not an integer", 1),
    (["1 1 0 0 0 1 -1", "-1 3 0 0 0 1 1"],
     r"node id -1 is negative; ids must be positive integers \(parent -1 marks a root\)", 2),
    (["-7 1 0 0 0 1 -1"], r"node id -7 is negative", 1),
    (["1 1 0 0 0 1 -1", "2 3 nan 0 0 1 1"], r"coordinate is not finite", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 inf 0 1 1"], r"coordinate is not finite", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 -Infinity 1 1"], r"coordinate is not finite", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 1e400 1 1"], r"coordinate is not finite", 2),
    (["1 1 0 0 0 1 -1", "2 3 0 0 0 1 1e20"], r"parent id 100000000000000000000 of node 2 does not exist", 2),
    (["1 1 0 0 0 1 -1", "2 1e20 0 0 0 1 1"], r"type '1e20' is out of range", 2),
    (["# only a comment"], r"no nodes found", None),
])
def test_malformed_input_names_file_and_line(write_swc_text, lines, message, line_no):
    path = write_swc_text("\n".join(lines) + "\n", name="bad.swc")
    with pytest.raises(SWCError, match=message) as info:
        read_swc(path)
    assert "bad.swc" in str(info.value)
    assert info.value.line == line_no
    if line_no is not None:
        assert f"bad.swc:{line_no}:" in str(info.value)


@pytest.mark.parametrize("text", ["1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n",
                                  "# exported\n1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n",
                                  "\r\n1 1 0 0 0 1 -1\r\n2 3 1 0 0 1 1\r\n"])
def test_utf8_byte_order_mark_is_ignored(tmp_path, text):
    path = tmp_path / "bom.swc"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Windows tools save "UTF-8"
    m = read_swc(path)
    assert m.n_nodes == 2 and m.parent.tolist() == [-1, 0]
    assert m.header == (["# exported"] if text.startswith("#") else [])
    lines = ("\ufeff" + text).splitlines()  # parse_swc on text decoded as plain utf-8
    assert parse_swc(lines).n_nodes == 2


def test_id_zero_is_accepted_as_some_tools_start_there():
    m = parse_swc(["0 1 0 0 0 1 -1", "1 3 1 0 0 1 0", "2 3 2 0 0 1 1"])
    assert m.parent.tolist() == [-1, 0, 1]


def test_any_negative_parent_marks_a_root():
    m = parse_swc(["1 1 0 0 0 1 -1", "2 3 1 0 0 1 -2", "3 3 2 0 0 1 2"])
    assert len(m.roots) == 2


def test_ids_beyond_float_precision_stay_distinct():
    big = 2**53  # 2**53 and 2**53 + 1 are the same float64
    m = parse_swc([f"{big} 1 0 0 0 1 -1", f"{big + 1} 3 1 0 0 1 {big}", f"{big + 2} 3 2 0 0 1 {big + 1}"])
    assert m.parent.tolist() == [-1, 0, 1]


def test_units_come_from_the_header_unless_given(tiny_swc, tmp_path):
    m = read_swc(tiny_swc)
    assert m.units == "um"  # no header: µm
    vox = write_swc(m.to_voxels((2.0, 0.5, 0.5)), tmp_path / "vox.swc")
    assert "# units: voxel" in vox.read_text()
    assert read_swc(vox).units == "voxel"
    assert read_swc(vox, units="um").units == "um"  # an explicit argument wins
    assert read_swc(write_swc(m, tmp_path / "um.swc")).units == "um"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SWCError, match="nope.swc: file not found"):
        read_swc(tmp_path / "nope.swc")


def test_scale_translate_and_unit_conversion(tiny_swc):
    m = read_swc(tiny_swc)
    s = m.scale((2.0, 3.0, 4.0))
    np.testing.assert_allclose(s.xyz, m.xyz * [2, 3, 4])
    np.testing.assert_allclose(s.radius, m.radius * 2.5)  # mean of the in-plane factors
    t = m.translate((1, -1, 2))
    np.testing.assert_allclose(t.xyz - m.xyz, np.tile([1, -1, 2], (6, 1)))
    vox = m.to_voxels((2.0, 0.5, 0.25))  # voxel size (z, y, x)
    assert vox.units == "voxel"
    np.testing.assert_allclose(vox.xyz, m.xyz / [0.25, 0.5, 2.0])
    np.testing.assert_allclose(vox.radius, m.radius / 0.25)
    back = vox.to_um((2.0, 0.5, 0.25))
    np.testing.assert_allclose(back.xyz, m.xyz)
    np.testing.assert_allclose(back.radius, m.radius)


def test_resample_subdivides_edges_and_keeps_geometry(tiny_swc):
    m = read_swc(tiny_swc)
    r = m.resample(0.5)
    assert r.total_length == pytest.approx(m.total_length)
    assert r.edge_lengths().max() <= 0.5 + 1e-9
    assert (r.parent < np.arange(r.n_nodes)).all()
    assert r.n_branch_points == m.n_branch_points and r.n_tips == m.n_tips
    # original nodes are all still there
    for p in m.xyz:
        assert np.min(np.linalg.norm(r.xyz - p, axis=1)) < 1e-9
    # interpolated radius halfway along 12(r=0.6) -> 13(r=0.5): 0.55
    mid = np.argmin(np.linalg.norm(r.xyz - [5.0, 2.0, 1.0], axis=1))
    assert r.radius[mid] == pytest.approx(0.55)
    # ... but a neurite leaving the soma 10(r=1.5) -> 12(r=0.6) keeps its own radius, as rendered
    mid = np.argmin(np.linalg.norm(r.xyz - [3.0, 2.0, 1.0], axis=1))
    assert r.radius[mid] == pytest.approx(0.6)


def test_crop_ends_edges_on_the_box_face():
    m = Morphology(np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0]], float), np.ones(3), np.full(3, 3),
                   np.array([-1, 0, 1]))
    c = m.crop((-1, -1, -1), (5, 5, 5))
    assert c.n_nodes == 2
    np.testing.assert_allclose(c.xyz[1], [5, 0, 0])  # edge 0→1 now ends on the face x=5
    c2 = m.crop((8, 2, -1), (12, 12, 1))  # only node 2 inside; enters through the face y=2
    assert c2.n_nodes == 2
    np.testing.assert_allclose(c2.xyz[0], [10, 2, 0])
    assert c2.parent.tolist() == [-1, 0]


def test_real_morphologies_read(shared_morphologies):
    files = sorted(shared_morphologies.glob("*.swc"))
    assert len(files) >= 10
    for f in files:
        m = read_swc(f)
        assert m.n_nodes > 100, f.name
        assert m.total_length > 0
        assert (m.parent < np.arange(m.n_nodes)).all()
