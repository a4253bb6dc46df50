"""Targeted tests that kill mutants of neurovit/data/blocks.py (training blocks and whole volumes).

Each test pins a behaviour the broader tests (tests/test_claims.py, tests/test_lightning.py) left open: the
exact slices and pixels a block holds (edge slices repeated, the plane padded with 0, float32), where
positive and negative blocks are placed (the foreground offset range, negative blocks inside the volume,
small volumes padded from the top-left corner), the augmentation pipeline stage by stage (each flip and
turn keeps image and label aligned and fires with its stated probability; intensity stages stay in their
ranges), the key-derived seeding of an item, the constructor's checks and defaults, pickling a `Volume`
for data-loader workers, `EpochSampler`'s epochs and `WholeVolumeDataset`'s items. Everything runs on
tiny synthetic TIFF volumes written to `tmp_path`. The mutants they kill are named in the comments
(mutmut's names, `python tests/mutation.py blocks` lists them); equivalent mutants are documented in
tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import math
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

import neurovit.data.blocks as blocks_module
from neurovit.data.blocks import (
    BlockDataset,
    EpochSampler,
    Volume,
    WholeVolumeDataset,
    _plain_tensor,
    augmentations,
    is_positive,
)
from neurovit.data.normalise import Normaliser, count_nonfinite
from neurovit.data.volumes import write_volume
from neurovit.errors import DatasetError

EXACT = Normaliser(percentiles=(0.0, 100.0))  # x ↦ (x − min) / (max − min): positions decode exactly


def make_volume(tmp_path: Path, image: np.ndarray, label: np.ndarray, name: str = "v",
                normaliser: Normaliser | None = EXACT) -> Volume:
    write_volume(tmp_path / f"{name}_img.tif", image)
    write_volume(tmp_path / f"{name}_lab.tif", label)
    return Volume(name, tmp_path / f"{name}_img.tif", tmp_path / f"{name}_lab.tif", normaliser)


def coded(shape) -> np.ndarray:
    """Voxel (z, y, x) holds z·10000 + y·100 + x, so a normalised pixel tells where it came from."""
    z, y, x = np.indices(shape)
    return (z * 10000 + y * 100 + x).astype(np.uint16)


def decode(v: Volume, values) -> np.ndarray:
    """Raw voxel values of normalised pixels of `v` (EXACT normaliser)."""
    n = v.normalise
    return np.rint(np.asarray(values, dtype=np.float64) * n.scale + n.offset).astype(np.int64)


# ============================================================================ Volume.__init__
def test_volume_rejects_image_and_label_of_different_shapes(tmp_path):
    # xǁVolumeǁ__init____mutmut_8 (the message users fix their data set from)
    write_volume(tmp_path / "a.tif", np.zeros((2, 4, 5), np.uint16))
    write_volume(tmp_path / "b.tif", np.zeros((2, 4, 6), np.uint8))
    with pytest.raises(DatasetError) as info:
        Volume("cell", tmp_path / "a.tif", tmp_path / "b.tif")
    assert str(info.value) == "cell: image a.tif has shape (2, 4, 5) but its label b.tif has shape (2, 4, 6)"


def test_volume_warns_about_nonfinite_voxels_at_the_callers_line(tmp_path, monkeypatch):
    # xǁVolumeǁ__init____mutmut_15 (no count), 17/20 (message), 19 (stacklevel=None raises),
    # 22/23 (the warning points at the line that builds the Volume, not blocks.py or pytest)
    image = np.ones((2, 4, 4), np.float32)
    image[0, 1, 1], image[1, 2, 3] = np.nan, np.inf
    write_volume(tmp_path / "img.tif", image)
    write_volume(tmp_path / "lab.tif", np.zeros((2, 4, 4), np.uint8))
    called_from = []

    def spy(volume):  # records the line that called Volume.__init__: this test's, or mutmut's trampoline's
        caller = sys._getframe(1).f_back
        called_from.append((caller.f_code.co_filename, caller.f_lineno))
        return count_nonfinite(volume)

    monkeypatch.setattr(blocks_module, "count_nonfinite", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Volume("v", tmp_path / "img.tif", tmp_path / "lab.tif")
    ours = [w for w in caught if "NaN or infinite" in str(w.message)]
    assert len(ours) == 1
    w = ours[0]
    assert w.category is UserWarning
    assert str(w.message).startswith(f"{tmp_path / 'img.tif'}: 2 voxel(s) are NaN or infinite: ")
    assert called_from and (w.filename, w.lineno) == called_from[0]


# ============================================================================ Volume.__getstate__
def test_pickled_volume_reopens_its_files_and_gives_the_same_blocks(tmp_path):
    # xǁVolumeǁ__getstate____mutmut_1/2 (no state), 3 ("" instead of None: the restored volume cannot
    # read), 4/5/6/7 (the open memory maps travel with the pickle: a copy of every voxel per worker)
    image = coded((4, 32, 32))
    label = np.zeros(image.shape, np.uint8)
    label[2, 5, 7] = 1
    v = make_volume(tmp_path, image, label)
    before = v.block(2, 0, 0, 3, 16, 16)
    assert v.image is not None and v.label is not None  # both memory maps are open now
    payload = pickle.dumps(v)
    assert len(payload) < image.nbytes // 4  # neither the image nor the label voxels are in it
    restored = pickle.loads(payload)
    assert restored._img is None and restored._lab is None
    after = restored.block(2, 0, 0, 3, 16, 16)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert restored.shape == (4, 32, 32) and restored.foreground.tolist() == [2 * 32 * 32 + 5 * 32 + 7]
    assert v.image is not None  # pickling did not close the original's maps


# ============================================================================ Volume.block
@pytest.fixture
def small(tmp_path) -> Volume:
    """A (4, 6, 7) volume: coded image, label = voxels whose code is even."""
    image = coded((4, 6, 7))
    return make_volume(tmp_path, image, (image % 2 == 0).astype(np.uint8))


def test_block_repeats_edge_slices_and_reads_whole_planes_as_float32(small):
    # xǁVolumeǁblock__mutmut_3 (z − 1 = −1 wraps to the last slice), 20 (slice 0 never read),
    # 23 (the last slice never read), 36/50 (row / column 0 never read), 58/60/63/65 (float64 blocks)
    raw = coded((4, 6, 7))
    for z, slices in [(0, [0, 0, 1]), (1, [0, 1, 2]), (3, [2, 3, 3])]:
        img, lab = small.block(z, 0, 0, 3, 6, 7)
        assert img.dtype == np.float32 and lab.dtype == np.float32
        np.testing.assert_array_equal(decode(small, img), raw[slices])
        np.testing.assert_array_equal(lab, (raw[slices] % 2 == 0).astype(np.float32))


def test_block_pads_the_plane_with_zeros_around_the_volume(small):
    # xǁVolumeǁblock__mutmut_36/50 (row/column 0 dropped), 41 (rows clipped at the x extent: a shape error)
    raw = coded((4, 6, 7))
    img, lab = small.block(1, -2, -3, 3, 10, 12)
    assert img.shape == lab.shape == (3, 10, 12)
    np.testing.assert_array_equal(decode(small, img[:, 2:8, 3:10]), raw[0:3])
    np.testing.assert_array_equal(lab[:, 2:8, 3:10], raw[0:3] % 2 == 0)
    inside = np.zeros((10, 12), bool)
    inside[2:8, 3:10] = True
    assert not img[:, ~inside].any() and not lab[:, ~inside].any()


def test_block_overlapping_one_row_or_column_and_blocks_outside(small):
    # xǁVolumeǁblock__mutmut_74/76 (a one-row / one-column overlap is dropped),
    # 72 (a block beside the volume in x only, or in y only, fails to assemble)
    raw = coded((4, 6, 7))
    img, _ = small.block(2, 5, 0, 1, 4, 7)  # only the volume's last row
    np.testing.assert_array_equal(decode(small, img[0, 0]), raw[2, 5])
    assert not img[0, 1:].any()
    img, _ = small.block(2, 0, 6, 1, 6, 4)  # only the volume's last column
    np.testing.assert_array_equal(decode(small, img[0, :, 0]), raw[2, :, 6])
    assert not img[0, :, 1:].any()
    for y0, x0 in [(0, 10), (10, 0), (0, -8), (-9, 0)]:
        img, lab = small.block(2, y0, x0, 3, 4, 4)
        assert img.shape == (3, 4, 4) and not img.any() and not lab.any(), (y0, x0)


# ============================================================================ augmentations
def tagged(shape=(1, 3, 6, 6)) -> dict:
    """Image and label both hold every voxel's index: any misalignment or which flip/turn ran shows."""
    t = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    return {"image": t.clone(), "label": t.clone()}


def run_stage(stage, n: int, make=tagged, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    stage.set_random_state(seed=seed)
    out = []
    for _ in range(n):
        item = stage(make())
        out.append((np.asarray(item["image"]), np.asarray(item["label"])))
    return out


@pytest.mark.parametrize("stage, axis", [(0, 2), (1, 3), (2, 1)])  # H, W, then D (array axes of (1, D, H, W))
def test_each_flip_reverses_one_axis_of_image_and_label_half_the_time(stage, axis):
    # x_augmentations__mutmut_9/12/14 (first flip: all axes / W instead of H), 11/13 (its probability
    # 0.1 / always), 17/20 (second flip: all axes), 19/21 (its probability), 25/28/30 (third flip: all axes /
    # H instead of D), 27/29 (its probability), 44 (the flips are dropped), 87 (an empty pipeline)
    x = tagged()["image"].numpy()
    flips = 0
    for img, lab in run_stage(augmentations(True).transforms[stage], 200):
        np.testing.assert_array_equal(img, lab)  # image and label stay aligned
        flipped = np.array_equal(img, np.flip(x, axis))
        assert flipped or np.array_equal(img, x)
        flips += flipped
    assert 70 <= flips <= 130  # prob 0.5 of 200


def test_the_turn_of_square_blocks_is_uniform_over_the_four_quarter_turns():
    # x_augmentations__mutmut_37 (probability 0.1), 40 (always turned), 41 (max_k=4: no turn 7/16 of the
    # time); prob 0.75 with k in 1..3 makes each of the four orientations equally likely
    x = tagged()["image"].numpy()
    turns = [np.rot90(x, k, axes=(2, 3)) for k in range(4)]
    counts = [0, 0, 0, 0]
    for img, lab in run_stage(augmentations(True).transforms[3], 400):
        np.testing.assert_array_equal(img, lab)
        (k,) = [k for k in range(4) if np.array_equal(img, turns[k])]
        counts[k] += 1
    assert all(70 <= c <= 130 for c in counts), counts  # 100 each expected


def constant_image() -> dict:
    return {"image": torch.ones(1, 3, 16, 16), "label": torch.zeros(1, 3, 16, 16)}


@pytest.mark.parametrize("stage, lo, hi", [(4, 0.8, 1.2), (5, 0.9, 1.1)])
def test_intensity_scale_and_shift_change_half_the_images_within_their_range(stage, lo, hi):
    # x_augmentations__mutmut_51/55 (scale probability 0.1 / always), 61/65 (shift probability)
    changed, values = 0, []
    for img, lab in run_stage(augmentations(True).transforms[stage], 200, constant_image):
        assert not lab.any()  # labels are never touched by intensity stages
        assert np.ptp(img) < 1e-6  # a constant image stays constant (one factor / offset per image)
        if img[0, 0, 0, 0] != 1.0:
            changed += 1
            values.append(float(img[0, 0, 0, 0]))
    assert 70 <= changed <= 130
    assert lo - 1e-6 <= min(values) < lo + 0.05 and hi - 0.05 < max(values) <= hi + 1e-6


def test_contrast_gamma_is_within_0_7_and_1_5_for_three_images_in_ten():
    # x_augmentations__mutmut_70 (gamma (0.5, 4.5)), 71 (probability 0.1), 74 (gamma (1.7, 1.5)),
    # 75 (gamma up to 2.5), 76 (always applied)
    def ramp():
        img = torch.zeros(1, 1, 1, 3)
        img[..., 1], img[..., 2] = 0.5, 1.0
        return {"image": img, "label": torch.zeros(1, 1, 1, 3)}

    gammas = []
    for img, _ in run_stage(augmentations(True).transforms[6], 300, ramp):
        if img[0, 0, 0, 1] != 0.5:
            gammas.append(math.log(float(img[0, 0, 0, 1])) / math.log(0.5))
        assert img[0, 0, 0, 0] == 0.0 and abs(img[0, 0, 0, 2] - 1.0) < 1e-6  # the range is kept
    assert 60 <= len(gammas) <= 120  # prob 0.3 of 300
    assert 0.7 - 1e-3 <= min(gammas) < 0.8 and 1.4 < max(gammas) <= 1.5 + 1e-3


def test_gaussian_noise_has_a_standard_deviation_of_at_most_0_05_for_three_images_in_ten():
    # x_augmentations__mutmut_81 (std 0.1), 82 (probability 0.1), 86 (always applied)
    stds = []
    for img, lab in run_stage(augmentations(True).transforms[7], 200, constant_image):
        assert not lab.any()
        if not np.array_equal(img, np.ones_like(img)):
            stds.append(float(np.std(img - 1.0)))
    assert 40 <= len(stds) <= 80  # prob 0.3 of 200
    assert 0.04 < max(stds) < 0.055


# ============================================================================ _plain_tensor
def test_plain_tensor_drops_monai_metadata_and_converts_arrays():
    # x__plain_tensor__mutmut_2/4/8/9 (a MetaTensor comes back), 3 (arrays have no as_tensor), 10
    out = _plain_tensor(MetaTensor(torch.tensor([1, 2], dtype=torch.int16)))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.tolist() == [1.0, 2.0]
    out = _plain_tensor(np.array([[3, 4]], dtype=np.uint8))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.tolist() == [[3.0, 4.0]]
    out = _plain_tensor(torch.tensor([5], dtype=torch.uint8))
    assert type(out) is torch.Tensor and out.tolist() == [5.0]


# ============================================================================ BlockDataset.__init__
@pytest.fixture
def one_voxel(tmp_path) -> Volume:
    """A (3, 20, 20) volume whose only foreground voxel is (1, 10, 10)."""
    label = np.zeros((3, 20, 20), np.uint8)
    label[1, 10, 10] = 1
    return make_volume(tmp_path, coded((3, 20, 20)), label)


def test_block_dataset_defaults(one_voxel):
    # xǁBlockDatasetǁ__init____mutmut_1 (depth 6 is refused), 2 (pos_fraction 1.5 is refused),
    # 3 (augmentation off by default), 4 (seed 1)
    ds = BlockDataset([one_voxel], 4)
    assert (ds.depth, ds.size, ds.pos_fraction, ds.seed, len(ds)) == (5, (100, 100), 0.5, 0, 4)
    assert ds.transform is not None
    assert [is_positive(i, 0.5) for i in range(4)] == [ds[i]["positive"] for i in range(4)]
    item = BlockDataset([one_voxel], 4, augment=False)[1]
    ref = BlockDataset([one_voxel], 4, augment=False, seed=0)[1]
    assert item["image"].shape == (1, 5, 100, 100) and torch.equal(item["image"], ref["image"])


@pytest.mark.parametrize("depth", [0, -1, 2, 4])
def test_block_depth_must_be_a_positive_odd_number(one_voxel, depth):
    # xǁBlockDatasetǁ__init____mutmut_5/8 (even depths accepted), 12 (message)
    with pytest.raises(DatasetError) as info:
        BlockDataset([one_voxel], 4, block_depth=depth)
    assert str(info.value) == f"block_depth must be a positive odd number, got {depth}"


def test_block_depth_one_and_pos_fraction_bounds_are_accepted(one_voxel):
    # xǁBlockDatasetǁ__init____mutmut_6/7 (depth 1 refused), 15 (0.0 refused), 16 (1.0 refused)
    ds = BlockDataset([one_voxel], 4, block_depth=1, block_size=(8, 8), pos_fraction=0.0, augment=False)
    assert ds[0]["image"].shape == (1, 1, 8, 8) and not any(ds[i]["positive"] for i in range(4))
    ds = BlockDataset([one_voxel], 4, block_depth=1, block_size=(8, 8), pos_fraction=1.0, augment=False)
    assert all(ds[i]["positive"] for i in range(4))


@pytest.mark.parametrize("fraction", [-0.1, 1.5, 2.0])
def test_pos_fraction_must_be_within_0_and_1(one_voxel, fraction):
    # xǁBlockDatasetǁ__init____mutmut_17 (up to 2 accepted), 18 (message)
    with pytest.raises(DatasetError) as info:
        BlockDataset([one_voxel], 4, pos_fraction=fraction)
    assert str(info.value) == f"pos_fraction must be within [0, 1], got {fraction}"


def test_no_volumes_is_refused_with_a_message():
    # xǁBlockDatasetǁ__init____mutmut_20/21/22
    with pytest.raises(DatasetError) as info:
        BlockDataset([], 4)
    assert str(info.value) == "no training volumes"


def test_augmentation_choice_and_non_square_blocks(one_voxel):
    # xǁBlockDatasetǁ__init____mutmut_29 (block height taken from the width), 37/38 (augment ignored),
    # 39 (augment=False still augments), 40/42 (no turns for square blocks), 41 (turns for non-square)
    def stages(ds):
        assert isinstance(ds.transform, Compose)
        return [type(t).__name__ for t in ds.transform.transforms]

    assert "RandRotate90d" in stages(BlockDataset([one_voxel], 4, block_size=(8, 8)))
    wide = BlockDataset([one_voxel], 8, block_depth=3, block_size=(6, 10), seed=2)
    assert wide.size == (6, 10) and "RandRotate90d" not in stages(wide)
    assert stages(wide)[:3] == ["RandFlipd"] * 3
    for k in range(8):
        item = wide[k]
        assert item["image"].shape == item["label_all"].shape == (1, 3, 6, 10) and item["label"].shape == (1, 6, 10)
    plain = BlockDataset([one_voxel], 4, block_depth=3, block_size=(6, 10), augment=False)
    assert plain.transform is None


# ============================================================================ BlockDataset.__getitem__
def test_positive_blocks_hold_the_foreground_voxel_in_their_middle_half(one_voxel):
    # xǁBlockDatasetǁ__getitem____mutmut_27/28/29/31/33/34 (row offset range of the foreground voxel,
    # [h//4, h − h//4)), 40/41/42/44/46/47 (column offset range, [w//4, w − w//4))
    h, w = 14, 18
    ds = BlockDataset([one_voxel], 128, block_depth=3, block_size=(h, w), pos_fraction=1.0, augment=False)
    rows, cols = [], []
    for key in range(128):
        item = ds[key]
        assert item["positive"] is True
        assert not item["label_all"][0, [0, 2]].any()  # the voxel is on the centre slice only
        (r, c), = torch.nonzero(item["label"][0]).tolist()
        rows.append(r)
        cols.append(c)
    assert (min(rows), max(rows)) == (3, 10)  # h // 4 .. h − h // 4 − 1
    assert (min(cols), max(cols)) == (4, 13)  # w // 4 .. w − w // 4 − 1


def test_negative_blocks_lie_inside_the_volume_and_cover_every_position(tmp_path):
    # xǁBlockDatasetǁ__getitem____mutmut_53 (z drawn from the y extent), 57/69 (the last positions are
    # never drawn), 62/74 (blocks beyond the volume), 63 (y range from the x extent), 65/77 (one past the end)
    shape, h, w = (4, 20, 24), 14, 18
    v = make_volume(tmp_path, coded(shape), np.ones(shape, np.uint8))
    ds = BlockDataset([v], 160, block_depth=3, block_size=(h, w), pos_fraction=0.0, augment=False, seed=5)
    zs, y0s, x0s = set(), set(), set()
    for key in range(160):
        item = ds[key]
        assert item["positive"] is False
        assert bool(item["label_all"].all())  # never padded: the label is 1 everywhere inside
        code = decode(v, item["image"][0, :, 0, 0])
        z, y0, x0 = code[1] // 10000, code[1] // 100 % 100, code[1] % 100
        assert (code // 10000).tolist() == [max(z - 1, 0), z, min(z + 1, 3)]
        np.testing.assert_array_equal(decode(v, item["image"][0, 1]), coded(shape)[z, y0:y0 + h, x0:x0 + w])
        zs.add(int(z))
        y0s.add(int(y0))
        x0s.add(int(x0))
    assert zs == {0, 1, 2, 3} and y0s == set(range(7)) and x0s == set(range(7))


def test_volumes_smaller_than_a_block_are_padded_from_the_top_left_corner(tmp_path):
    # xǁBlockDatasetǁ__getitem____mutmut_57/69 (integers(−1) raises), 64/76 (shifted by one pixel)
    v = make_volume(tmp_path, coded((2, 6, 5)), np.ones((2, 6, 5), np.uint8))
    ds = BlockDataset([v], 24, block_depth=1, block_size=(8, 8), pos_fraction=0.0, augment=False)
    for key in range(24):
        lab = ds[key]["label"][0]
        expected = torch.zeros(8, 8)
        expected[:6, :5] = 1
        assert torch.equal(lab, expected), key


def test_augmented_item_is_its_block_through_the_pipeline_seeded_from_the_key(one_voxel):
    # xǁBlockDatasetǁ__getitem____mutmut_99 (the transform skipped), 103/104/105/106/107 (a different
    # augmentation seed: the documented key → block → augmentation derivation keeps runs reproducible)
    ds = BlockDataset([one_voxel], 8, block_depth=3, block_size=(8, 8), pos_fraction=0.0, seed=4)
    pipeline = augmentations(True)
    for key in range(8):
        rng = np.random.default_rng([4, key])
        rng.integers(1)  # the volume
        z, y0, x0 = int(rng.integers(3)), int(rng.integers(13)), int(rng.integers(13))
        img, lab = one_voxel.block(z, y0, x0, 3, 8, 8)
        pipeline.set_random_state(seed=int(rng.integers(2**31 - 1)))
        want = pipeline({"image": torch.from_numpy(img)[None], "label": torch.from_numpy(lab)[None]})
        got = ds[key]
        assert torch.equal(got["image"], _plain_tensor(want["image"])), key
        assert torch.equal(got["label_all"], _plain_tensor(want["label"])), key
        assert type(got["image"]) is torch.Tensor and got["image"].dtype == torch.float32


# ============================================================================ EpochSampler
def test_epoch_sampler_counts_passes_without_set_epoch():
    # xǁEpochSamplerǁ__iter____mutmut_5 (passes stuck at 1), 7 (passes count by 2)
    s = EpochSampler(3)
    assert [list(s) for _ in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_epoch_sampler_follows_set_epoch():
    # xǁEpochSamplerǁset_epoch__mutmut_1 (epoch lost), xǁEpochSamplerǁ__iter____mutmut_2 (epoch ignored)
    s = EpochSampler(4)
    s.set_epoch(7)
    assert list(s) == [28, 29, 30, 31] and list(s) == [28, 29, 30, 31]  # the same epoch until set again
    s.set_epoch(2)
    assert list(s) == [8, 9, 10, 11] and len(s) == 4


# ============================================================================ WholeVolumeDataset
def test_whole_volume_items_are_raw_images_binary_labels_and_voxel_sizes(tmp_path):
    # xǁWholeVolumeDatasetǁ__init____mutmut_1/3, xǁWholeVolumeDatasetǁ__getitem____mutmut_1..32 except 8
    image = coded((2, 3, 4))
    label = np.zeros((2, 3, 4), np.uint8)
    label[0, 0, :3] = [1, 3, 0]
    a = make_volume(tmp_path, image, label, name="a")
    b = make_volume(tmp_path, image + 1, label, name="b")
    ds = WholeVolumeDataset([a, b])
    assert len(ds) == 2
    item = ds[1]
    assert set(item) == {"image", "label", "name", "voxel_size"} and item["name"] == "b"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(item["image"][0].numpy(), image + 1)  # not normalised
    assert item["label"].dtype == torch.float32 and item["label"].shape == (1, 2, 3, 4)
    assert item["label"][0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0] and float(item["label"].sum()) == 2.0
    assert item["voxel_size"].dtype == torch.float64 and item["voxel_size"].shape == (3,)
    assert bool(torch.isnan(item["voxel_size"]).all())
    sized = WholeVolumeDataset([a], voxel_size=(2, 0.5, 0.25))[0]
    assert sized["voxel_size"].dtype == torch.float64 and sized["voxel_size"].tolist() == [2.0, 0.5, 0.25]
    assert sized["name"] == "a" and torch.equal(sized["image"][0], torch.from_numpy(image.astype(np.float32)))
