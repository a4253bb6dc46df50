"""The benchmark scripts: the naive baseline is the paper's procedure, and the scripts run end to end."""

import sys

import numpy as np
import pytest
import torch

from neurovit.benchmarks import inference as bench_inference
from neurovit.inference import predict_volume


class _MeanOfBlock(torch.nn.Module):
    """Centre-slice logits = the mean over the block's slices (depends on every slice, so z-offsets matter)."""

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, H, W)
        return x.mean(dim=2)


def test_naive_loop_equals_predict_volume_when_tiles_fit():
    vol = np.random.default_rng(0).normal(size=(7, 32, 48)).astype(np.float32)
    ident = lambda a: np.asarray(a, np.float32)  # noqa: E731
    naive = bench_inference.naive_stacked_loop(_MeanOfBlock(), vol, 5, 16, ident)
    fast = predict_volume(_MeanOfBlock(), vol, block_depth=5, roi_size=16, overlap=0.0, sw_batch_size=8)
    np.testing.assert_allclose(naive, fast, atol=1e-6)
    # only the first n slices when asked
    assert bench_inference.naive_stacked_loop(_MeanOfBlock(), vol, 5, 16, ident, n_slices=2).shape == (2, 32, 48)


def test_naive_loop_zero_pads_the_last_tile():
    vol = np.ones((5, 20, 20), np.float32)
    naive = bench_inference.naive_stacked_loop(_MeanOfBlock(), vol, 5, 16, lambda a: a)
    # a tile is predicted whole, edge pixels see their own values (the model is pointwise here): all sigmoid(1)
    np.testing.assert_allclose(naive, 1 / (1 + np.exp(-1.0)), rtol=1e-6)


@pytest.mark.slow
def test_inference_benchmark_runs_and_prints_ratios(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["inference", "--ckpt", str(tmp_path / "none.ckpt"),
                                      "--allslices-ckpt", str(tmp_path / "none.ckpt"), "--shape", "6", "100", "100",
                                      "--naive-slices", "1", "--batch", "4", "--strides", "5",
                                      "--memory-sizes", "4", "8", "--memory-side", "100", "--data", str(tmp_path)])
    bench_inference.main()
    out = capsys.readouterr().out
    assert "naive stacked loop" in out and "1.00x" in out
    assert out.count("x\n") >= 2  # a ratio on each predict_volume row
    assert "accuracy: skipped" in out
    assert "RSS grows" in out and "mapped files" in out and "x the output" in out


@pytest.mark.slow
def test_train_benchmark_runs_and_prints_ratios(monkeypatch, capsys):
    from neurovit.benchmarks import train as bench_train

    monkeypatch.setattr(sys, "argv", ["train", "--sizes", "tiny", "--unfused", "tiny", "--batch", "2", "--steps", "1",
                                      "--size", "32", "--workers", "0"])
    bench_train.main()
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith(("SliceViT", "MONAI"))]
    assert len(rows) == 3 and rows[-1].endswith("1.00x")  # UNETR is its own baseline
    assert "eager-attn" in rows[1]
    assert "0 workers:" in out and "tiny model's training rate" in out


def test_levers_keep_the_network_output():
    from neurovit.benchmarks import levers
    from neurovit.models import TINY_ARCH, SliceViT

    torch.manual_seed(0)
    net = SliceViT(arch=TINY_ARCH, img_size=32).eval()
    x = torch.randn(2, 1, 5, 32, 32)
    with torch.inference_mode():
        ref = net(x)
        for variant in (levers.channels_last(net), levers.eager_attention(net)):
            torch.testing.assert_close(variant(x), ref, atol=1e-4, rtol=1e-4)
    assert net.encoder.blocks[0].attn.fused_attn  # the original is left as it was
    assert levers.ms_per_block(net, x, blocks=4) > 0


@pytest.mark.slow
def test_levers_benchmark_prints_every_lever(tmp_path, monkeypatch, capsys):
    from neurovit.benchmarks import levers

    monkeypatch.setattr(sys, "argv", ["levers", "--ckpt", str(tmp_path / "none.ckpt"), "--batch", "2", "--blocks", "2",
                                      "--rounds", "1"])
    levers.main()
    out = capsys.readouterr().out
    for row in ("(baseline)", "batch 1", "channels-last", "bf16 autocast", "eager attention"):
        assert row in out
    assert "1.00x" in out


def test_throughput_benchmark_prints_each_decoder_row(capsys):
    from neurovit.benchmarks.throughput import main

    main(["--shape", "3", "40", "40", "--repeats", "1", "--batch", "4"])
    text = capsys.readouterr().out
    rows = [ln.split() for ln in text.splitlines() if ln.startswith(("unetr", "light"))]
    assert [r[:2] for r in rows] == [["unetr", "center"], ["unetr", "all"], ["light", "center"], ["light", "all"]]
    assert rows[0][5] == "1.00x" and all(float(r[4]) > 0 for r in rows)
    assert float(rows[2][3]) < float(rows[0][3]) / 3  # light: ≥ 3x fewer FLOPs per output voxel
