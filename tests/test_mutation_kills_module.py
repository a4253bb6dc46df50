"""Targeted tests that kill the mutants of neurovit/lit/module.py that survived the rest of the suite.

They pin what users see of the LightningModule without running a Trainer: the exact loss each `loss=`
choice builds (MONAI class, sigmoid on logits, Dice over the whole batch, the soft-clDice term and its
weight and iterations), whole-volume validation and test (the per-volume dice, precision and recall that are
logged, and under which names and options), the training step's target and log, the `compile=True` path
(with `torch.compile` replaced by a spy), the preprocessing taken from the data module or restored from a
checkpoint (and the warnings and errors for old or mismatched checkpoints), the learning-rate schedule's
edge cases and parameter groups, and the plumbing of `predict_probabilities` into `segment_volume`.
The networks are tiny hand-made modules whose output is a simple function of the input, so every expected
value is computed by hand; a trainer, where one is read, is a namespace with just the attributes used.
Mutant names are mutmut's (`python tests/mutation.py module` lists them); equivalent mutants are
documented separately.
"""

from __future__ import annotations

import math
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

import neurovit.lit.module as module_mod
from neurovit.data.normalise import CHECKPOINT_KEY, Normaliser, Preprocessing
from neurovit.errors import NeurovitError
from neurovit.lit.module import SegmentationModule, WithClDice, _made_by_cli

EXACT = Preprocessing((1.0, 1.0, 1.0), Normaliser((0.0, 100.0)))  # min-max: a 0/0.5/1 stack stays as it is
TRAINED = Preprocessing((2.0, 0.5, 0.5), Normaliser((5.0, 95.0), clip=(0.0, 1.0)))


class CentreSlice(nn.Module):
    """Centre-slice net: logit = 40 · (centre slice − 0.5), so 1 → p ≈ 1, 0 → p ≈ 0 and 0.5 → p = 0.5."""

    block_depth, img_size = 3, 8

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(40.0))

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, H, W)
        return self.scale * (x[:, :, x.shape[2] // 2] - 0.5)


class AllSlices(nn.Module):
    """All-slices net: logit = 4 · (x − 0.5) for every slice of the block."""

    block_depth, img_size, out_slices = 3, 8, "all"

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x):  # (B, 1, D, H, W) → (B, 1, D, H, W)
        return self.scale * (x - 0.5)


def log_spy(module, monkeypatch) -> list[tuple[str, object, dict]]:
    """Replace `module.log` by a recorder of (name, value, keyword options)."""
    calls = []
    monkeypatch.setattr(module, "log", lambda name, value, **kw: calls.append((name, value, kw)))
    return calls


def volume_batch(*, name=("vol",), voxel_size=(1.0, 1.0, 1.0)) -> dict:
    """One whole volume as the validation loader gives it (batch of 1, float 0/1 label): the net predicts
    4 voxels (image 1), 2 voxels sit exactly at p = 0.5 (image 0.5), and the label has 2 voxels, one of
    them predicted: dice 1/3, precision 1/4, recall 1/2."""
    image = torch.zeros(4, 8, 8)
    image[1, 2, 2:6] = 1.0  # predicted
    image[2, 5, 5:7] = 0.5  # p = 0.5 exactly: not above the threshold
    label = torch.zeros(4, 8, 8)
    label[1, 2, 2] = 1.0  # hit
    label[3, 7, 7] = 1.0  # missed
    batch = {"image": image[None, None], "label": label[None, None]}
    if name is not None:
        batch["name"] = list(name) if isinstance(name, tuple) else name
    if voxel_size is not None:
        batch["voxel_size"] = torch.tensor([voxel_size], dtype=torch.float64)
    return batch


def evaluating_module(**kw) -> SegmentationModule:
    module = SegmentationModule(CentreSlice(), **kw)
    module.preprocessing = EXACT
    return module


# --------------------------------------------------------------------------- _made_by_cli
def test_made_by_cli_is_false_on_a_lightning_without_the_hyperparameter_context(monkeypatch):
    # x__made_by_cli__mutmut_1
    from lightning.pytorch.core.mixins import hparams_mixin

    assert _made_by_cli() is False
    token = hparams_mixin._given_hyperparameters.set({"net": None})
    try:
        assert _made_by_cli() is True
    finally:
        hparams_mixin._given_hyperparameters.reset(token)
    monkeypatch.delattr(hparams_mixin, "_given_hyperparameters")  # an older/newer Lightning: ImportError
    assert _made_by_cli() is False


# --------------------------------------------------------------------------- _make_loss
def _loss_inputs():
    """Two samples with very different foreground (per-sample Dice ≠ batch Dice) and logits far outside
    [0, 1] (sigmoid on/off matters)."""
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 1:7, 1:7] = 1
    target[1, 0, 3, 3:5] = 1
    logits = 3 * torch.randn(2, 1, 8, 8, generator=g)
    return logits, target


@pytest.mark.parametrize("kind, cls_name", [("dicece", "DiceCELoss"), ("dicefocal", "DiceFocalLoss"),
                                             ("dice", "DiceLoss")])
def test_each_loss_is_the_monai_loss_with_sigmoid_and_batch_dice(kind, cls_name):
    # _make_loss__mutmut_6..30 (sigmoid/batch options and branch tests of all three kinds)
    import monai.losses

    cls = getattr(monai.losses, cls_name)
    loss = SegmentationModule._make_loss(kind, 0.0)
    assert type(loss) is cls
    logits, target = _loss_inputs()
    got = float(loss(logits, target))
    assert got == pytest.approx(float(cls(sigmoid=True, batch=True)(logits, target)), rel=1e-6)
    # the inputs tell the options apart
    assert abs(got - float(cls(sigmoid=False, batch=True)(logits, target))) > 1e-3
    assert abs(got - float(cls(sigmoid=True, batch=False)(logits, target))) > 1e-3


def test_an_unknown_loss_is_refused_by_name():
    # _make_loss__mutmut_31
    with pytest.raises(ValueError) as e:
        SegmentationModule._make_loss("bce", 0.0)
    assert str(e.value) == "unknown loss 'bce'; use dicece, dicefocal or dice"


def test_cldice_weight_zero_is_off_and_any_positive_weight_adds_the_term():
    # _make_loss__mutmut_32..37
    from monai.losses import DiceCELoss, DiceLoss

    assert type(SegmentationModule._make_loss("dicece", 0.0)) is DiceCELoss
    assert type(SegmentationModule._make_loss("dicece", -1.0)) is DiceCELoss
    loss = SegmentationModule._make_loss("dice", 0.5)
    assert isinstance(loss, WithClDice) and type(loss.base) is DiceLoss and loss.weight == 0.5
    logits, target = _loss_inputs()
    assert float(loss(logits, target)) > float(loss.base(logits, target))


# --------------------------------------------------------------------------- WithClDice
_UNSET = object()


class NewSoftclDice(nn.Module):
    """MONAI >= 1.5's signature (smooth_nr/smooth_dr); records the arguments passed."""

    calls: list = []

    def __init__(self, iter_=_UNSET, smooth_nr=_UNSET, smooth_dr=_UNSET, smooth=_UNSET):
        super().__init__()
        passed = dict(iter_=iter_, smooth_nr=smooth_nr, smooth_dr=smooth_dr, smooth=smooth)
        NewSoftclDice.calls.append({k: v for k, v in passed.items() if v is not _UNSET})


class OldSoftclDice(nn.Module):
    """Older MONAI's signature (`smooth` smooths the ratios); records the arguments passed."""

    calls: list = []

    def __init__(self, iter_=_UNSET, smooth=_UNSET):
        super().__init__()
        passed = dict(iter_=iter_, smooth=smooth)
        OldSoftclDice.calls.append({k: v for k, v in passed.items() if v is not _UNSET})


def test_cldice_is_built_with_3_iterations_and_unit_ratio_smoothing_on_either_monai_api(monkeypatch):
    # WithClDice.__init____mutmut_1, 4..23
    import monai.losses

    base = nn.Identity()
    NewSoftclDice.calls, OldSoftclDice.calls = [], []
    monkeypatch.setattr(monai.losses, "SoftclDiceLoss", NewSoftclDice)
    WithClDice(base, 0.5)
    WithClDice(base, 0.5, iterations=5)
    assert NewSoftclDice.calls == [{"iter_": 3, "smooth_nr": 1.0, "smooth_dr": 1.0},
                                   {"iter_": 5, "smooth_nr": 1.0, "smooth_dr": 1.0}]
    monkeypatch.setattr(monai.losses, "SoftclDiceLoss", OldSoftclDice)
    loss = WithClDice(base, 2)
    assert OldSoftclDice.calls == [{"iter_": 3, "smooth": 1.0}]
    assert loss.base is base and loss.weight == 2.0 and type(loss.weight) is float


def test_cldice_loss_is_base_plus_weight_times_soft_cldice_of_the_probabilities():
    # WithClDice.__init____mutmut_2/3, WithClDice.forward__mutmut_1..11
    from monai.losses import DiceLoss, SoftclDiceLoss

    logits, target = _loss_inputs()
    base = DiceLoss(sigmoid=True, batch=True)
    got = float(WithClDice(base, 0.5)(logits, target))
    cl = float(SoftclDiceLoss(iter_=3, smooth_nr=1.0, smooth_dr=1.0)(target, torch.sigmoid(logits)))
    assert 0.05 < cl < 1
    assert got == pytest.approx(float(base(logits, target)) + 0.5 * cl, rel=1e-6)


# --------------------------------------------------------------------------- forward / _train_forward
def test_forward_is_the_net():
    # forward__mutmut_1
    module = SegmentationModule(CentreSlice())
    x = torch.rand(2, 1, 3, 8, 8)
    torch.testing.assert_close(module(x), 40 * (x[:, :, 1] - 0.5))


class CompileSpy:
    """Stands in for torch.compile: records what it compiles, and the inputs of the compiled callable."""

    def __init__(self):
        self.compiled, self.inputs = [], []

    def __call__(self, net):
        self.compiled.append(net)

        def run(x):
            self.inputs.append(x)
            return net(x) + 1000.0  # tells the compiled path's output apart
        return run


def test_compile_compiles_the_net_once_and_trains_through_it(monkeypatch):
    # _train_forward__mutmut_1 (timeout), 3..13
    spy = CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    plain = SegmentationModule(CentreSlice())
    x = torch.rand(2, 1, 3, 8, 8)
    torch.testing.assert_close(plain._train_forward(x), plain.net(x))
    assert spy.compiled == []  # compile=False never compiles
    module = SegmentationModule(CentreSlice(), compile=True)
    keys = set(module.state_dict())
    out1, out2 = module._train_forward(x), module._train_forward(x)
    assert spy.compiled == [module.net]  # once, the module's own net
    assert len(spy.inputs) == 2 and all(i is x for i in spy.inputs)
    torch.testing.assert_close(out1, module.net(x) + 1000.0)
    torch.testing.assert_close(out2, out1)
    assert set(module.state_dict()) == keys  # the compiled copy is no submodule: checkpoints keep their keys


# --------------------------------------------------------------------------- setup
def test_setup_takes_the_data_modules_preprocessing_once(monkeypatch):
    # setup__mutmut_1, 2, 4, 8..14
    module = SegmentationModule(CentreSlice())
    module.setup("fit")  # no trainer: nothing to take
    assert module.preprocessing is None
    monkeypatch.setattr(module, "_trainer", SimpleNamespace())  # a trainer without a data module
    module.setup("fit")
    assert module.preprocessing is None
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(datamodule=SimpleNamespace(preprocessing=None)))
    module.setup("fit")
    assert module.preprocessing is None
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(datamodule=SimpleNamespace(preprocessing=TRAINED)))
    module.setup("fit")
    assert module.preprocessing is TRAINED
    # restored from a checkpoint first: the data module does not replace it
    module.preprocessing = EXACT
    module.setup("validate")
    assert module.preprocessing is EXACT


# --------------------------------------------------------------------------- on_save / on_load_checkpoint
def test_checkpoints_record_the_preprocessing_or_the_default():
    # on_save_checkpoint__mutmut_1/2
    module = SegmentationModule(CentreSlice())
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt == {CHECKPOINT_KEY: Preprocessing().to_dict()}
    module.preprocessing = TRAINED
    module.on_save_checkpoint(ckpt)
    assert ckpt[CHECKPOINT_KEY] == TRAINED.to_dict() != Preprocessing().to_dict()


def test_a_checkpoints_preprocessing_is_restored_silently():
    # on_load_checkpoint__mutmut_1..3, 16, 32
    module = SegmentationModule(CentreSlice())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.on_load_checkpoint({CHECKPOINT_KEY: TRAINED.to_dict()})
    assert module.preprocessing == TRAINED


def test_an_old_checkpoint_warns_at_the_callers_line_and_assumes_the_default(monkeypatch):
    # on_load_checkpoint__mutmut_3, 4, 6, 7, 9..15
    real, callers = Preprocessing, []

    def spy(*args, **kwargs):  # called right after the warning, in on_load_checkpoint's own frame
        caller = sys._getframe(1).f_back
        callers.append((caller.f_code.co_filename, caller.f_lineno))
        return real(*args, **kwargs)

    monkeypatch.setattr(module_mod, "Preprocessing", spy)
    module = SegmentationModule(CentreSlice())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        module.on_load_checkpoint({"state_dict": {}})
    assert [str(w.message) for w in rec] == [
        "the checkpoint records no preprocessing (written by an older neurovit): assuming normalisation "
        "percentiles (1, 99.8) and an unknown training voxel size"]
    assert rec[0].category is UserWarning
    assert len(callers) == 1 and (rec[0].filename, rec[0].lineno) == callers[0]
    assert module.preprocessing == real()


def _mismatch_message(saved, current):
    return (f"the checkpoint was trained with {saved.to_dict()} but the data now gives {current.to_dict()}; "
            "resume with the same data.percentiles/clip and voxel size, or start a new run")


def test_resuming_a_fit_with_other_preprocessing_is_refused(monkeypatch):
    # on_load_checkpoint__mutmut_22, 24..30
    module = SegmentationModule(CentreSlice())
    module.preprocessing = EXACT
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING)))
    with pytest.raises(NeurovitError) as e:
        module.on_load_checkpoint({CHECKPOINT_KEY: TRAINED.to_dict()})
    assert str(e.value) == _mismatch_message(TRAINED, EXACT)
    # the same preprocessing resumes silently
    module.preprocessing = TRAINED
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.on_load_checkpoint({CHECKPOINT_KEY: TRAINED.to_dict()})
    assert module.preprocessing == TRAINED


@pytest.mark.parametrize("trainer", [None, SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.VALIDATING))])
def test_evaluating_with_other_preprocessing_warns_and_uses_the_checkpoints(trainer, monkeypatch):
    # on_load_checkpoint__mutmut_18, 21, 23, 25, 31
    module = SegmentationModule(CentreSlice())
    module.preprocessing = EXACT
    monkeypatch.setattr(module, "_trainer", trainer)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        module.on_load_checkpoint({CHECKPOINT_KEY: TRAINED.to_dict()})
    assert [str(w.message) for w in rec] == [
        f"evaluating with the checkpoint's preprocessing {TRAINED.to_dict()}, not the data module's "
        f"{EXACT.to_dict()}"]
    assert module.preprocessing == TRAINED


# --------------------------------------------------------------------------- inference_settings / predict
def test_inference_settings_are_the_modules_with_overrides_that_are_not_none():
    # inference_settings__mutmut_11..13
    module = SegmentationModule(CentreSlice(), sw_overlap=0.5, sw_batch_size=4, z_chunk=2, z_stride=3)
    assert module.inference_settings() == {"overlap": 0.5, "sw_batch_size": 4, "z_chunk": 2, "z_stride": 3}
    assert module.inference_settings(z_stride=None, overlap=0.1, autocast=torch.bfloat16) == {
        "overlap": 0.1, "sw_batch_size": 4, "z_chunk": 2, "z_stride": 3, "autocast": torch.bfloat16}


class SegmentSpy:
    """Stands in for segment_volume: records its arguments and returns a fixed probability stack."""

    def __init__(self):
        self.calls = []

    def __call__(self, net, volume, **kwargs):
        self.calls.append((net, volume, kwargs))
        return np.full(volume.shape, 0.25, np.float32), {"spy": True}


def test_predict_probabilities_hands_everything_to_segment_volume(monkeypatch, tmp_path):
    # predict_probabilities__mutmut_1, 4..8, 11..15, 17; _segment__mutmut_5, 13, 16, 20, 23, 24, 26, 28
    spy = SegmentSpy()
    monkeypatch.setattr(module_mod, "segment_volume", spy)
    module = SegmentationModule(CentreSlice(), z_stride=2)
    module.preprocessing = TRAINED
    vol = np.zeros((4, 8, 8), np.float32)
    got = module.predict_probabilities(vol)  # the defaults
    assert type(got) is np.ndarray and got.shape == (4, 8, 8) and module.last_predict_info == {"spy": True}
    net, volume, kw = spy.calls[-1]
    assert net is module.net and volume is vol
    assert kw == {"preprocessing": TRAINED, "voxel_size": None, "block_depth": 3, "roi_size": 8,
                  "device": torch.device("cpu"), "overlap": 0.25, "sw_batch_size": 32, "z_chunk": 8,
                  "z_stride": 2, "progress": False}
    other, out = CentreSlice(), np.empty((4, 8, 8), np.float32)
    got = module.predict_probabilities(torch.zeros(4, 8, 8), [1.0, 2.0, 2.0], progress=True, out=out,
                                       workdir=tmp_path, net=other, z_chunk=3)
    assert isinstance(got, torch.Tensor) and got.shape == (4, 8, 8)
    net, volume, kw = spy.calls[-1]
    assert net is other and isinstance(volume, np.ndarray)
    assert kw["voxel_size"] == [1.0, 2.0, 2.0] and kw["progress"] is True and kw["out"] is out
    assert kw["workdir"] == tmp_path and kw["z_chunk"] == 3 and kw["device"] == torch.device("cpu")


@pytest.mark.parametrize("voxel_size", [None, (float("nan"), 1.0, 1.0), (1.0, float("inf"), 1.0)])
def test_an_unknown_or_non_finite_voxel_size_is_taken_as_the_models(voxel_size):
    # _segment__mutmut_3, 4, 9 (the validation loader gives NaN voxel sizes when a dataset has none)
    module = evaluating_module()
    with pytest.warns(UserWarning, match="the stack records no voxel size"):
        prob = module.predict_probabilities(volume_batch()["image"][0, 0], voxel_size)
    assert module.last_predict_info["voxel_size_from"] == "assumed"
    assert module.last_predict_info["voxel_size"] == (1.0, 1.0, 1.0)
    assert prob.shape == (4, 8, 8)


# --------------------------------------------------------------------------- _evaluate_volume
def test_evaluate_volume_thresholds_strictly_and_scores_the_volume():
    # _evaluate_volume__mutmut_1..18, 21..32, 47..54
    module = evaluating_module()
    batch = volume_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the loader's voxel size matches the model's: no warning
        out = module._evaluate_volume(batch)
    assert set(out) == {"name", "prob", "pred", "scores"}
    assert out["name"] == "vol"
    assert module.last_predict_info["voxel_size_from"] == "file"
    assert module.last_predict_info["voxel_size"] == (1.0, 1.0, 1.0)
    assert float(out["prob"][2, 5, 5]) == 0.5 and not out["pred"][2, 5, 5]  # p = threshold is background
    assert out["pred"].dtype == torch.bool and int(out["pred"].sum()) == 4
    assert out["scores"] == pytest.approx({"dice": 1 / 3, "precision": 1 / 4, "recall": 1 / 2})


def test_evaluate_volume_uses_the_threshold_hyperparameter():
    # _evaluate_volume__mutmut_24/25
    module = evaluating_module(threshold=0.4)
    out = module._evaluate_volume(volume_batch())
    assert int(out["pred"].sum()) == 6  # the p = 0.5 voxels are now foreground
    assert out["scores"]["precision"] == pytest.approx(1 / 6)


@pytest.mark.parametrize("name, expected", [(("a",), "a"), ("plain", "plain"), (None, "")])
def test_evaluate_volume_names_the_volume(name, expected):
    # _evaluate_volume__mutmut_33..46 (a collated list, a bare string, no name at all)
    module = evaluating_module()
    assert module._evaluate_volume(volume_batch(name=name))["name"] == expected


def test_evaluate_volume_without_a_voxel_size_assumes_the_models():
    # _evaluate_volume__mutmut_19
    module = evaluating_module()
    with pytest.warns(UserWarning, match="records no voxel size"):
        out = module._evaluate_volume(volume_batch(voxel_size=None))
    assert module.last_predict_info["voxel_size_from"] == "assumed"
    assert out["scores"]["dice"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- validation_step / test_step
def test_validation_step_logs_volume_dice_precision_and_recall(monkeypatch):
    # validation_step__mutmut_1..13, 15, 16, 18..57
    module = evaluating_module()
    calls = log_spy(module, monkeypatch)
    out = module.validation_step(volume_batch(), 0)
    assert out["name"] == "vol" and out["scores"]["recall"] == pytest.approx(0.5)
    assert [(name, kw) for name, _, kw in calls] == [("val/dice", {"prog_bar": True, "batch_size": 1}),
                                                     ("val/precision", {"batch_size": 1}),
                                                     ("val/recall", {"batch_size": 1})]
    assert calls[0][1] is module.val_dice and calls[1][1] is module.val_precision
    assert calls[2][1] is module.val_recall
    assert float(module.val_dice.compute()) == pytest.approx(1 / 3)
    assert float(module.val_precision.compute()) == pytest.approx(0.25)
    assert float(module.val_recall.compute()) == pytest.approx(0.5)


def test_test_step_logs_volume_dice_precision_and_recall(monkeypatch):
    # test_step__mutmut_1..13, 15, 16, 18..39
    module = evaluating_module()
    calls = log_spy(module, monkeypatch)
    out = module.test_step(volume_batch(), 0)
    assert out["name"] == "vol"
    assert [(name, kw) for name, _, kw in calls] == [("test/dice", {"batch_size": 1}),
                                                     ("test/precision", {"batch_size": 1}),
                                                     ("test/recall", {"batch_size": 1})]
    assert calls[0][1] is module.test_dice
    assert calls[1][1] == pytest.approx(0.25) and calls[2][1] == pytest.approx(0.5)
    assert float(module.test_dice.compute()) == pytest.approx(1 / 3)


@pytest.mark.parametrize("step, metric", [("validation_step", "val_dice"), ("test_step", "test_dice")])
def test_the_dice_metric_gets_the_masks_on_the_modules_device(step, metric, monkeypatch):
    # validation_step__mutmut_14/17, test_step__mutmut_14/17 (GPU runs: the metric's state is on the GPU;
    # "meta" stands in for it here)
    module = evaluating_module()
    batch = volume_batch()
    out = module._evaluate_volume(batch)
    monkeypatch.setattr(module, "_evaluate_volume", lambda b: out)
    monkeypatch.setattr(module, "_device", torch.device("meta"))
    seen = []
    monkeypatch.setattr(getattr(module, metric), "update", lambda p, t: seen.append((p, t)))
    log_spy(module, monkeypatch)
    getattr(module, step)(batch, 0)
    (p, t), = seen
    assert p.device.type == t.device.type == "meta"
    assert p.shape == t.shape == (1, 1, 4, 8, 8) and p.dtype == t.dtype == torch.long


# --------------------------------------------------------------------------- training_step
def test_training_step_of_an_all_slices_net_uses_every_slices_label_and_logs_the_loss(monkeypatch):
    # training_step__mutmut_6, 8, 9, 11, 21..24, 27..35
    module = SegmentationModule(AllSlices())
    calls = log_spy(module, monkeypatch)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 1, 3, 8, 8, generator=g)
    label_all = (torch.rand(2, 1, 3, 8, 8, generator=g) > 0.6).float()
    label_all[:, :, 1] = 0  # the centre slice alone would be an empty target
    batch = {"image": image, "label_all": label_all, "label": label_all[:, :, 1]}
    loss = module.training_step(batch, 0)
    expected = module.loss_fn(4 * (image - 0.5), label_all)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    ((name, value, kw),) = calls
    assert name == "train/loss" and value is loss
    assert kw == {"prog_bar": True, "on_step": True, "on_epoch": True, "batch_size": 2}


def test_training_step_of_a_centre_slice_net_uses_the_centre_label(monkeypatch):
    # the 4-D path of training_step__mutmut_6/11 (a centre-slice net trains on the centre label)
    module = SegmentationModule(CentreSlice())
    calls = log_spy(module, monkeypatch)
    image = torch.rand(3, 1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    label = (image[:, :, 1] > 0.5).float()
    loss = module.training_step({"image": image, "label": label}, 0)
    expected = module.loss_fn(40 * (image[:, :, 1] - 0.5), label)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert calls[0][2]["batch_size"] == 3


# --------------------------------------------------------------------------- on_train_epoch_start
class EpochRecorder:
    def __init__(self):
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def test_each_training_epoch_reseeds_the_data_modules_blocks(monkeypatch):
    # on_train_epoch_start__mutmut_1, 2, 6..11, 15, 16
    module = SegmentationModule(CentreSlice())
    dm = EpochRecorder()
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(datamodule=dm, current_epoch=3))
    module.on_train_epoch_start()
    assert dm.epochs == [3]
    # data modules without set_epoch, no data module at all, or a trainer without the attribute: no-op
    for trainer in (SimpleNamespace(datamodule=SimpleNamespace(), current_epoch=1),
                    SimpleNamespace(datamodule=None, current_epoch=1), SimpleNamespace(current_epoch=1)):
        monkeypatch.setattr(module, "_trainer", trainer)
        module.on_train_epoch_start()


# --------------------------------------------------------------------------- _param_groups
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Linear(2, 2)
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.norm = nn.LayerNorm(2)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(2, 2)])  # "decoder." is as long as "encoder."
        self.head = nn.Module()
        self.head.bias = nn.Parameter(torch.zeros(2, 2))  # a 2-D bias: still no weight decay


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = Encoder(), Decoder()


def _lr_and_decay(module) -> dict[str, tuple[float, float]]:
    groups = module._param_groups()
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(by_param)
    return {name: by_param[id(p)] for name, p in module.net.named_parameters() if id(p) in by_param}


@pytest.mark.parametrize("decay", [0.5, 2.0])
def test_layer_decay_touches_only_encoder_blocks_and_embeddings(decay):
    # _param_groups__mutmut_25, 26, 35, 37, 62, 63
    module = SegmentationModule(EncoderDecoder(), lr=1.0, weight_decay=0.1, layer_decay=decay)
    got = _lr_and_decay(module)
    n = 2  # encoder blocks: block i gets decay^(n − i), the embeddings decay^(n + 1), the rest 1
    assert got == {  # powers of 2: exact
        "encoder.patch_embed.weight": (decay ** 3, 0.1), "encoder.patch_embed.bias": (decay ** 3, 0.0),
        "encoder.blocks.0.weight": (decay ** n, 0.1), "encoder.blocks.0.bias": (decay ** n, 0.0),
        "encoder.blocks.1.weight": (decay, 0.1), "encoder.blocks.1.bias": (decay, 0.0),
        "encoder.norm.weight": (1.0, 0.0), "encoder.norm.bias": (1.0, 0.0),
        "decoder.blocks.0.weight": (1.0, 0.1), "decoder.blocks.0.bias": (1.0, 0.0),
        "decoder.head.bias": (1.0, 0.0)}


def test_frozen_parameters_are_left_out_and_the_rest_kept():
    # _param_groups__mutmut_17
    net = EncoderDecoder()
    net.encoder.patch_embed.requires_grad_(False)  # the first parameters frozen, as when fine-tuning
    got = _lr_and_decay(SegmentationModule(net, lr=1.0, layer_decay=0.5))
    assert set(got) == {name for name, p in net.named_parameters() if p.requires_grad}
    assert len(got) == 9


# --------------------------------------------------------------------------- configure_optimizers
def _factor(module, total):
    """The schedule's lr factor per step, with a trainer estimating `total` steps."""
    module._trainer = SimpleNamespace(estimated_stepping_batches=total)
    conf = module.configure_optimizers()
    return conf, conf["lr_scheduler"]["scheduler"].lr_lambdas[0]


def test_the_scheduler_steps_every_batch_and_groups_added_later_get_the_modules_lr():
    # configure_optimizers__mutmut_6, 81, 82
    module = SegmentationModule(CentreSlice(), lr=3e-4)
    conf, _ = _factor(module, 100)
    assert conf["lr_scheduler"]["interval"] == "step"
    opt = conf["optimizer"]
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})  # e.g. a backbone unfrozen later
    assert opt.param_groups[-1]["lr"] == 3e-4


def test_the_schedule_spans_the_trainers_estimated_steps_and_ends_at_zero():
    # configure_optimizers__mutmut_8, 23, 45
    module = SegmentationModule(CentreSlice(), warmup_steps=0)
    _, f = _factor(module, 20)
    assert f(0) == 1.0  # no warm-up: full rate from the first step
    assert f(10) == pytest.approx(0.5)  # half-way through 20 steps, not 1000
    assert f(20) == pytest.approx(0.0, abs=1e-12)
    assert f(30) == pytest.approx(0.0, abs=1e-12)  # past the estimate the rate stays at 0


def test_a_warm_up_longer_than_the_run_ends_one_step_before_it():
    # configure_optimizers__mutmut_28, 29, 52
    module = SegmentationModule(CentreSlice(), warmup_steps=50)
    _, f = _factor(module, 20)  # warm = min(50, 20 − 1) = 19
    assert f(18) == pytest.approx(19 / 20)
    assert f(19) == pytest.approx(1.0)
    assert f(20) == pytest.approx(0.0, abs=1e-12)


def test_a_one_step_run_decays_to_zero_after_its_step():
    # configure_optimizers__mutmut_14
    module = SegmentationModule(CentreSlice(), warmup_steps=5, schedule="linear")
    _, f = _factor(module, 1)
    assert f(0) == 1.0 and f(1) == 0.0
    _, f = _factor(module, 0)  # an estimate of 0 steps counts as 1
    assert f(0) == 1.0 and f(1) == 0.0
    _, f = _factor(SegmentationModule(CentreSlice(), warmup_steps=5), 1)  # cosine
    assert f(0) == 1.0 and math.isclose(f(1), 0.0, abs_tol=1e-12)

