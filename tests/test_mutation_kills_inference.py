"""Targeted tests that kill the mutants of neurovit/inference.py that survived the rest of the suite.

They pin what users see of whole-volume prediction: `segment_volume`'s warnings (exact text, category and
the caller's line), its `info` dict, the resampling path for a stack whose voxel size differs from the
model's (memory-mapped scratch files under `workdir`, progress bars), normalisation of tensor and array
stacks, the all-slices path's centres, windows and padding, and the progress bar itself. The models are
tiny deterministic torch modules whose output is a simple (neighbour-dependent) function of the input, so
every expected value is computed by hand. Mutant names are mutmut's (`python tests/mutation.py
inference` lists them); equivalent mutants are documented separately.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import neurovit.data.resample as resample_module
import neurovit.inference as inference
from neurovit.data.normalise import NONFINITE_RULE, FittedNormaliser, Normaliser, Preprocessing
from neurovit.inference import _maybe_progress, predict_volume, segment_volume, slice_blocks

MODEL_VS = (1.0, 2.0, 2.0)
MINMAX = Normaliser((0.0, 100.0))  # fitted: (x - min) / (max - min)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _caller_of_segment_volume() -> tuple[str, int] | None:
    """(file, line) of the call into segment_volume on the current stack: where its warnings must point
    (the test's own line, or a wrapper's when segment_volume is wrapped, as under mutmut)."""
    frame = sys._getframe(1)
    while frame is not None:
        if "segment_volume" in frame.f_code.co_name and Path(frame.f_code.co_filename).name == "inference.py":
            return frame.f_back.f_code.co_filename, frame.f_back.f_lineno
        frame = frame.f_back
    return None


class DepthMean(nn.Module):
    """Centre-slice model: the logit of a pixel is the mean of its D-slice column (neighbour-dependent).
    Records the dtype of every input it sees and the line that called segment_volume."""

    def __init__(self):
        super().__init__()
        self.dtypes = []
        self.called_from = None

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, H, W)
        self.dtypes.append(x.dtype)
        self.called_from = self.called_from or _caller_of_segment_volume()
        return x.mean(dim=2)


def assert_warned_at_callers_line(w, model: DepthMean) -> None:
    """stacklevel=2: the warning names the line that called segment_volume, not inference.py or pytest."""
    assert w.category is UserWarning
    assert model.called_from is not None and (w.filename, w.lineno) == model.called_from
    assert Path(w.filename).name != "inference.py"


class DepthMeanAll(nn.Module):
    """All-slices model: every slice of a block predicts the block's depth mean."""

    out_slices = "all"

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, D, H, W)
        return x.mean(dim=2, keepdim=True).expand_as(x).clone()


class WindowMean(nn.Module):
    """Every pixel's logit is the mean of the whole window (all slices, all pixels) it is in."""

    def __init__(self, out_slices: str = "center"):
        super().__init__()
        self.out_slices = out_slices

    def forward(self, x):
        mean = x.mean(dim=(2, 3, 4), keepdim=True)
        if self.out_slices == "all":
            return mean.expand_as(x).clone()
        return mean[:, :, 0].expand(x.shape[0], 1, x.shape[3], x.shape[4]).clone()


def depth_mean_reference(v: np.ndarray, depth: int) -> np.ndarray:
    """sigmoid of each slice's D-slice mean, edge slices repeated: what DepthMean predicts."""
    n = len(v)
    idx = np.clip(np.arange(n)[:, None] + np.arange(depth) - depth // 2, 0, n - 1)
    return sigmoid(np.asarray(v, np.float64)[idx].mean(axis=1))


def all_slices_reference(v: np.ndarray, depth: int, centres) -> np.ndarray:
    """DepthMeanAll's blocks at `centres`, slice predictions averaged with weights 1 + min(d, D - 1 - d)."""
    n, half = len(v), depth // 2
    num, den = np.zeros(v.shape), np.zeros(n)
    for c in centres:
        p = sigmoid(np.asarray(v, np.float64)[np.clip(np.arange(c - half, c + half + 1), 0, n - 1)].mean(axis=0))
        for d in range(depth):
            z = c - half + d
            if 0 <= z < n:
                w = 1 + min(d, depth - 1 - d)
                num[z] += w * p
                den[z] += w
    return num / den[:, None, None]


def minmax(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return (v - v.min()) / (v.max() - v.min())


def stack(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(100, 400, size=shape).astype(np.uint16)


# ============================================================================ segment_volume
def test_an_unknown_voxel_size_is_assumed_to_be_the_models_with_a_warning_at_the_callers_line():
    # x_segment_volume__mutmut_2/18/19/20/21/22/23/24/25/26/27/30/32/33/34/35/36/81/96/123/127
    vol = stack((4, 8, 8))  # exactly 3 x 8 x 8 or more: no "smaller than one model block" warning
    pp = Preprocessing(MODEL_VS, MINMAX)
    model = DepthMean()
    with pytest.warns(UserWarning) as rec:
        prob, info = segment_volume(model, vol, preprocessing=pp, block_depth=3, roi_size=8)
    assert [str(w.message) for w in rec] == [
        "the stack records no voxel size; assuming the model's (1.0, 2.0, 2.0) µm (z, y, x): pass the real one "
        "(--voxel-size Z Y X) if it differs"]
    assert_warned_at_callers_line(rec[0], model)
    assert info == {"voxel_size": MODEL_VS, "voxel_size_from": "assumed", "model_voxel_size": MODEL_VS,
                    "resampled_to": None, "nonfinite_voxels": 0}
    assert prob.dtype == np.float32 and prob.shape == vol.shape
    np.testing.assert_allclose(prob, depth_mean_reference(minmax(vol), 3), atol=1e-6)  # the model's normaliser


def test_a_voxel_size_within_10_percent_predicts_on_the_stacks_grid_into_out_silently(capsys):
    # x_segment_volume__mutmut_1/7/10/11/12/13/14/15/16/17/37/81/116/124/128
    vol = stack((3, 8, 8), seed=1)  # exactly one model block (3 x 8 x 8): not "smaller"
    out = np.full(vol.shape, np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prob, info = segment_volume(DepthMean(), vol, preprocessing=Preprocessing(MODEL_VS, MINMAX),
                                    voxel_size=[1.05, 2, 2], block_depth=3, roi_size=(8, 8), out=out)
    assert prob is out
    np.testing.assert_allclose(out, depth_mean_reference(minmax(vol), 3), atol=1e-6)
    assert info == {"voxel_size": (1.05, 2, 2), "voxel_size_from": "file", "model_voxel_size": MODEL_VS,
                    "resampled_to": None, "nonfinite_voxels": 0}
    assert capsys.readouterr().err == ""  # progress bars are off by default


def test_a_checkpoint_without_voxel_size_predicts_on_the_stacks_own_grid_with_a_warning():
    # x_segment_volume__mutmut_38/39/41/42/43/44/45/46/47/48
    vol = stack((4, 8, 8), seed=2)
    model = DepthMean()
    with pytest.warns(UserWarning) as rec:
        prob, info = segment_volume(model, vol, preprocessing=Preprocessing(None, MINMAX),
                                    voxel_size=(2.0, 1.0, 1.0), block_depth=3, roi_size=8)
    assert [str(w.message) for w in rec] == [
        "the checkpoint records no training voxel size (written by an older neurovit); the stack is predicted "
        "on its own grid without resampling"]
    assert_warned_at_callers_line(rec[0], model)
    assert info == {"voxel_size": (2.0, 1.0, 1.0), "voxel_size_from": "file", "model_voxel_size": None,
                    "resampled_to": None, "nonfinite_voxels": 0}
    np.testing.assert_allclose(prob, depth_mean_reference(minmax(vol), 3), atol=1e-6)


def test_nonfinite_voxels_are_counted_in_info_and_warned_about_with_the_rule():
    # x_segment_volume__mutmut_49/51/52/53/54/56/57/59/60
    vol = stack((4, 8, 8), seed=3).astype(np.float32)
    vol[1, 2, 3] = vol[2, 0, 0] = np.nan
    vol[3, 7, 7] = -np.inf
    model = DepthMean()
    with pytest.warns(UserWarning) as rec:
        prob, info = segment_volume(model, vol, preprocessing=Preprocessing(MODEL_VS, MINMAX),
                                    voxel_size=MODEL_VS, block_depth=3, roi_size=8)
    assert [str(w.message) for w in rec] == [f"3 voxel(s) of the stack are NaN or infinite: {NONFINITE_RULE}"]
    assert_warned_at_callers_line(rec[0], model)
    assert info["nonfinite_voxels"] == 3
    assert np.isfinite(prob).all()


def test_a_stack_smaller_than_one_block_is_padded_with_a_warning_naming_every_short_axis():
    # x_segment_volume__mutmut_63/64/65/74/75/76/77/78/79/82/83/85/87/89/92/93/94/95
    vol = stack((2, 5, 6), seed=4)
    model = DepthMean()
    with pytest.warns(UserWarning) as rec:
        prob, _ = segment_volume(model, vol, preprocessing=Preprocessing(MODEL_VS, MINMAX),
                                 voxel_size=MODEL_VS, block_depth=3, roi_size=(8, 7))
    assert [str(w.message) for w in rec] == [
        "the stack (2, 5, 6) is smaller than one model block (3 x 8 x 7): 2 slices < 3, 5 rows < 8, "
        "6 columns < 7; it is padded (edge slices repeated, background in-plane), and predictions near the "
        "padding are less reliable"]
    assert_warned_at_callers_line(rec[0], model)
    np.testing.assert_allclose(prob, depth_mean_reference(minmax(vol), 3), atol=1e-6)  # pointwise in-plane


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (8, 8)])
def test_a_stack_that_is_not_three_dimensional_is_refused(shape):
    # the shape check (a (1, Z, Y, X) stack failed inside zip(strict=True) with a message naming no shape)
    with pytest.raises(ValueError, match=re.escape(f"expects one (Z, Y, X) stack, got shape {tuple(shape)}: "
                                                   "predict each channel or time point as its own stack")):
        segment_volume(DepthMean(), stack(shape), preprocessing=Preprocessing(MODEL_VS, MINMAX),
                       voxel_size=MODEL_VS, block_depth=3, roi_size=8)


def _resampled_reference(vol, in_vs, grid):
    """Resample to the model's grid, normalise with the stack's own fit, predict, resample back."""
    image = resample_module.resample(vol, in_vs, MODEL_VS, grid)
    norm = MINMAX.fit(vol)
    prob = depth_mean_reference(norm(image), 3).astype(np.float32)
    return resample_module.resample(prob, MODEL_VS, in_vs, vol.shape)


def test_a_stack_of_another_voxel_size_is_resampled_there_and_back_with_progress_bars(capsys):
    # x_segment_volume__mutmut_104/107/109/114/140/141/142/172/173/179/180/187/188/192/196/206/207/208/209/210/211
    # x_segment_volume__mutmut_212/217/218/219/225/226/227/228
    vol = stack((3, 8, 8), seed=5)
    pp = Preprocessing(MODEL_VS, MINMAX)
    prob, info = segment_volume(DepthMean(), vol, preprocessing=pp, voxel_size=(2.0, 2.0, 2.0), block_depth=3,
                                roi_size=8, progress=True)
    assert info == {"voxel_size": (2.0, 2.0, 2.0), "voxel_size_from": "file", "model_voxel_size": MODEL_VS,
                    "resampled_to": (6, 8, 8), "nonfinite_voxels": 0}
    assert type(prob) is np.ndarray and prob.dtype == np.float32 and prob.shape == (3, 8, 8)
    expected = _resampled_reference(vol, (2.0, 2.0, 2.0), (6, 8, 8))
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert np.abs(expected - depth_mean_reference(minmax(vol), 3)).max() > 1e-3  # not the own-grid prediction
    err = capsys.readouterr().err
    assert "resample in:" in err and "resample out:" in err and "predict:" in err
    # into a given output (e.g. a memory-mapped TIFF)
    out = np.full(vol.shape, np.nan, np.float32)
    prob, _ = segment_volume(DepthMean(), vol, preprocessing=pp, voxel_size=(2.0, 2.0, 2.0), block_depth=3,
                             roi_size=8, out=out)
    assert prob is out
    np.testing.assert_allclose(out, expected, atol=1e-6)


def _spy_on_resample(monkeypatch) -> list[dict]:
    calls, real = [], resample_module.resample

    def spy(src, from_voxel, to_voxel, out_shape=None, out=None, **kw):
        calls.append({"desc": kw.get("desc"),
                      **{f"{k}_memmap": isinstance(a, np.memmap) for k, a in (("src", src), ("out", out))},
                      **{f"{k}_file": getattr(a, "filename", None) for k, a in (("src", src), ("out", out))},
                      **{f"{k}_dtype": getattr(a, "dtype", None) for k, a in (("src", src), ("out", out))},
                      **{f"{k}_shape": getattr(a, "shape", None) for k, a in (("src", src), ("out", out))}})
        return real(src, from_voxel, to_voxel, out_shape, out, **kw)

    monkeypatch.setattr(resample_module, "resample", spy)
    return calls


def test_resampled_stacks_live_in_memory_mapped_float32_files_under_workdir(tmp_path, monkeypatch):
    # x_segment_volume__mutmut_143/144/145/146/147/148/149/157/161/171/178/181/185/186/193/197/199/203/204
    calls = _spy_on_resample(monkeypatch)
    vol = stack((3, 8, 8), seed=6)
    prob, _ = segment_volume(DepthMean(), vol, preprocessing=Preprocessing(MODEL_VS, MINMAX),
                             voxel_size=(2.0, 2.0, 2.0), block_depth=3, roi_size=8, workdir=str(tmp_path))
    assert [c["desc"] for c in calls] == ["resample in", "resample out"]
    image, prob_file = Path(calls[0]["out_file"]), Path(calls[1]["src_file"])
    assert calls[0]["out_memmap"] and calls[1]["src_memmap"]
    assert image.name == "image.npy" and prob_file.name == "prob.npy" and image.parent == prob_file.parent
    assert image.parent.parent == tmp_path and image.parent.name.startswith(".neurovit-resample-")
    assert calls[0]["out_dtype"] == np.float32 and calls[1]["src_dtype"] == np.float32
    assert calls[0]["out_shape"] == calls[1]["src_shape"] == (6, 8, 8)
    assert list(tmp_path.iterdir()) == []  # the scratch directory is removed afterwards
    np.testing.assert_allclose(prob, _resampled_reference(vol, (2.0, 2.0, 2.0), (6, 8, 8)), atol=1e-6)


def test_without_workdir_resampled_stacks_are_float32_arrays_in_memory(monkeypatch):
    # x_segment_volume__mutmut_149/150/151/152/153
    calls = _spy_on_resample(monkeypatch)
    segment_volume(DepthMean(), stack((3, 8, 8)), preprocessing=Preprocessing(MODEL_VS, MINMAX),
                   voxel_size=(2.0, 2.0, 2.0), block_depth=3, roi_size=8)
    assert not calls[0]["out_memmap"] and not calls[1]["src_memmap"]
    assert calls[0]["out_dtype"] == calls[1]["src_dtype"] == np.float32
    assert calls[0]["out_shape"] == calls[1]["src_shape"] == (6, 8, 8)


# ============================================================================ slice_blocks
def test_slice_blocks_clamp_to_the_given_n_z_and_to_the_slabs_end_by_default():
    # x_slice_blocks__mutmut_4/5
    vol = torch.arange(6.0)[:, None, None].expand(6, 2, 2)
    assert slice_blocks(vol, 2, 4, 5, n_z=4)[:, :, 0, 0].tolist() == [[0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    # a slab holding slices 3.. of a 6-slice stack: n_z defaults to 3 + offset = 6
    assert slice_blocks(vol[3:], 4, 6, 3, offset=3)[:, :, 0, 0].tolist() == [[3, 4, 5], [4, 5, 5]]


# ============================================================================ predict_volume / _slab
def test_tensor_and_array_stacks_are_normalised_when_asked_and_fed_as_float32():
    # x__slab__mutmut_2/3/4/5/6/7/9/14/16
    raw = np.random.default_rng(7).integers(0, 40, size=(5, 8, 8)).astype(np.uint16)
    norm = FittedNormaliser(10.0, 20.0)
    kw = dict(block_depth=3, roi_size=8, z_chunk=2)
    with_norm = depth_mean_reference((raw - 10.0) / 20.0, 3)
    without = depth_mean_reference(raw, 3)
    for volume in (raw, torch.from_numpy(raw.astype(np.float64))):
        model = DepthMean()
        np.testing.assert_allclose(predict_volume(model, volume, normalise=norm, **kw), with_norm, atol=1e-6)
        np.testing.assert_allclose(predict_volume(model, volume, **kw), without, atol=1e-6)
        assert set(model.dtypes) == {torch.float32}


# ============================================================================ _predict_all_slices
def test_all_slices_blocks_end_on_the_last_slice_and_read_only_their_slabs(capsys):
    # x__predict_all_slices__mutmut_35/36/66/85/90/91/103
    vol = np.random.default_rng(8).normal(size=(9, 6, 6)).astype(np.float32)
    fitted, reads = FittedNormaliser(0.5, 2.0), []

    def normalise(x):
        reads.append(len(x))
        return fitted(x)

    prob = predict_volume(DepthMeanAll(), vol, block_depth=5, roi_size=6, z_stride=5, z_chunk=1,
                          normalise=normalise, progress=True)
    # centres 0 and 5, then the last slice (5 + 2 < 8); each group reads its centres ± 2 slices, clamped
    np.testing.assert_allclose(prob, all_slices_reference((vol - 0.5) / 2.0, 5, [0, 5, 8]), atol=1e-6)
    assert reads == [3, 5, 3]
    assert "predict:" in capsys.readouterr().err


def test_all_slices_windows_blend_like_centre_slice_windows():
    # x__predict_all_slices__mutmut_112/123/124
    ramp = np.linspace(0, 2, 40, dtype=np.float32)
    vol = np.broadcast_to(ramp, (3, 20, 40)).copy()  # constant along z: every block of a slice agrees
    kw = dict(block_depth=3, roi_size=16, overlap=0.5, sw_batch_size=8, blend="gaussian")
    centre = predict_volume(WindowMean("center"), vol, **kw)
    np.testing.assert_allclose(predict_volume(WindowMean("all"), vol, **kw), centre, atol=1e-6)
    assert np.ptp(centre[1, 10]) > 0.1  # the windows' means differ along x


def test_all_slices_windows_larger_than_the_stack_are_zero_padded():
    # x__predict_all_slices__mutmut_117/130/131/132
    vol = np.full((4, 6, 7), 0.3, np.float32)
    prob = predict_volume(WindowMean("all"), vol, block_depth=3, roi_size=8)
    np.testing.assert_allclose(prob, sigmoid(0.3 * 42 / 64), atol=1e-6)  # 42 of 64 window pixels are stack


class _DeviceSpy(torch.Tensor):
    moves: list = []

    def to(self, *args, **kwargs):
        _DeviceSpy.moves.append(args[0] if args else kwargs.get("device"))
        return torch.Tensor.to(self.as_subclass(torch.Tensor), *args, **kwargs)


def test_all_slices_slabs_are_moved_to_the_models_device(monkeypatch):
    # x__predict_all_slices__mutmut_87 (on a GPU this is what puts the stack there)
    real = inference._slab
    monkeypatch.setattr(inference, "_slab", lambda *a: real(*a).as_subclass(_DeviceSpy))
    _DeviceSpy.moves = []
    prob = predict_volume(DepthMeanAll(), np.zeros((6, 8, 8), np.float32), block_depth=3, roi_size=8, z_chunk=2,
                          device="cpu")
    assert _DeviceSpy.moves == [torch.device("cpu")] * 2  # centres 0, 2, 4 in groups of two
    np.testing.assert_allclose(prob, 0.5)


# ============================================================================ _maybe_progress
def test_progress_is_a_transient_predict_bar_counting_chunks_or_nothing(capsys):
    # x__maybe_progress__mutmut_1/2/3/5/7/8/9/10/11/12/13/14
    items = range(3)
    assert _maybe_progress(items, False) is items
    assert capsys.readouterr().err == ""
    bar = _maybe_progress(items, True)
    assert list(bar) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "predict:   0%" in err and "0/3 [00:00<?, ?chunk/s]" in err
    assert not err.endswith("\n") and err.split("\r")[-2].strip() == ""  # leave=False: the finished bar is cleared
