"""Chunked, resumable, distributed prediction into OME-Zarr with Lightning's `Trainer.predict`.

`neurovit predict --format ome-zarr [--devices N --num-nodes M --accelerator ...]` runs here: the same
launch as training (Lightning starts the processes; torchrun and SLURM work as for `fit`). Each stack is
cut into tasks aligned to the output's zarr chunks (`neurovit.data.chunks`); every rank predicts its own
disjoint, balanced share (rank r takes tasks r, r + W, ...), and a `BasePredictionWriter` writes each
task into the shared stores. Nothing here schedules work: Lightning launches, the plan is static.

Outputs per stack (NAME = the input's full stem), written in hidden `.NAME_*.ome.zarr.partial` stores and
renamed into place (with a multiscale pyramid) once every task is done:
- `NAME_prob.ome.zarr`: probabilities as uint8, round(255 · p) (4× smaller than float32; 1/255 steps);
- `NAME_mask.ome.zarr`: p > threshold, uint8 0/1 (pyramid by maximum, so thin neurites stay visible).
Resumable: a finished task leaves a marker in the partial store's `.done/` (after its data is written);
a re-run skips marked tasks and gives output identical to an uninterrupted run. The settings are
fingerprinted; a re-run with other settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Subset

from neurovit.data.chunks import ChunkDataset, collate_one, plan_tasks, rank_share
from neurovit.errors import NeurovitError

DONE = ".done"
FINGERPRINT = "neurovit_predict.json"


class ChunkPredictor(L.LightningModule):
    """Predicts one task (raw region → probabilities of its core) with a trained SegmentationModule."""

    def __init__(self, module, plan: dict, normalisers: list, settings: dict):
        super().__init__()
        self.module = module
        self.plan, self.normalisers, self.settings = plan, normalisers, settings
        self.dataset: ChunkDataset | None = None

    def predict_dataloader(self) -> DataLoader:
        keys = self.dataset.keys
        mine = rank_share(len(keys), self.trainer.global_rank, self.trainer.world_size)
        # Lightning needs at least one batch per rank: a rank without tasks (fewer tasks than processes,
        # or all done before a resume) gets one no-op item
        data = Subset(self.dataset, mine) if mine else [{"volume": -1}]
        return DataLoader(data, batch_size=1, collate_fn=collate_one, num_workers=self.settings.get("num_workers", 0))

    @torch.no_grad()
    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        from neurovit.inference import predict_volume

        if batch["volume"] < 0:
            return None
        v, t = batch["volume"], batch["task"]
        task = self.plan["tasks"][v][t]
        s = self.settings
        prob = predict_volume(self.module.net, batch["region"], block_depth=self.module.block_depth,
                              roi_size=self.module.roi_size, overlap=s["overlap"], sw_batch_size=s["sw_batch_size"],
                              z_chunk=s["z_chunk"], z_stride=s["z_stride"], normalise=self.normalisers[v],
                              device=self.device, autocast=s["autocast"])
        core = batch["region"][task.core_in_region()]
        nonfinite = int(np.count_nonzero(~np.isfinite(core))) if core.dtype.kind in "fc" else 0
        return {"volume": v, "task": t, "prob": prob[task.core_in_region()], "nonfinite": nonfinite}


class ChunkWriter(BasePredictionWriter):
    """Writes each task's probabilities and mask into the shared partial stores, then marks it done; the
    last step (rank 0) builds the pyramids and renames the finished stores into place."""

    def __init__(self, outputs: list[dict], plan: dict, threshold: float):
        super().__init__(write_interval="batch")
        self.outputs, self.plan, self.threshold = outputs, plan, threshold
        self.stores: list[dict] = []
        self.nonfinite = [0] * len(outputs)  # NaN/inf input voxels in this rank's task cores, per stack

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero:
            self.stores = [_open_stores(o, create=True) for o in self.outputs]
        trainer.strategy.barrier("neurovit-stores")
        if not trainer.is_global_zero:
            self.stores = [_open_stores(o, create=False) for o in self.outputs]

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        if prediction is None:  # a no-op item
            return
        v, t, prob = prediction["volume"], prediction["task"], prediction["prob"]
        self.nonfinite[v] += prediction["nonfinite"]
        task = self.plan["tasks"][v][t]
        z0, z1, y0, y1, x0, x1 = task.core
        stores = self.stores[v]
        stores["prob"].array[z0:z1, y0:y1, x0:x1] = np.rint(np.clip(prob, 0, 1) * 255).astype(np.uint8)
        stores["mask"].array[z0:z1, y0:y1, x0:x1] = (prob > self.threshold).astype(np.uint8)
        for s in stores.values():  # the marker comes after the data: a crash in between recomputes the task
            (s.tmp_path / DONE / task.key).touch()

    def on_predict_end(self, trainer, pl_module) -> None:
        import warnings

        from neurovit.data.normalise import NONFINITE_RULE

        counts = trainer.strategy.reduce(torch.tensor(self.nonfinite, dtype=torch.float64), reduce_op="sum")
        for o, n in zip(self.outputs, counts.tolist(), strict=True):
            if n and trainer.is_global_zero:
                warnings.warn(f"{Path(o['prob']).name}: {int(n)} input voxel(s) predicted in this run are NaN or "
                              f"infinite: {NONFINITE_RULE}", UserWarning, stacklevel=2)
        trainer.strategy.barrier("neurovit-predict-done")
        if trainer.is_global_zero:
            for o, stores in zip(self.outputs, self.stores, strict=True):
                finish(o, stores, self.plan["tasks"][o["index"]])
        trainer.strategy.barrier("neurovit-committed")


def _open_stores(output: dict, create: bool) -> dict:
    """The partial prob/mask stores of one stack (created, or reopened to resume), fingerprint checked."""
    from neurovit.data.omezarr import create_omezarr

    stores = {}
    for kind in ("prob", "mask"):
        s = create_omezarr(output[kind], output["shape"], np.uint8, output["voxel_size"], chunks=output["chunks"],
                           resumable=True)
        fp = s.tmp_path / FINGERPRINT
        if create and not s.resumed:
            (s.tmp_path / DONE).mkdir(exist_ok=True)
            fp.write_text(json.dumps(output["fingerprint"], sort_keys=True, indent=1))
        elif json.loads(fp.read_text()) != output["fingerprint"]:
            raise NeurovitError(f"{s.tmp_path} is an interrupted prediction made with other settings; delete it, "
                                "or re-run with the same checkpoint, input and options to resume it")
        stores[kind] = s
    return stores


def done_keys(partials) -> set[str]:
    """Tasks marked finished in every one of a stack's partial store folders (none when one is missing)."""
    sets = [{p.name for p in (Path(f) / DONE).iterdir()} if (Path(f) / DONE).is_dir() else set() for f in partials]
    return set.intersection(*sets) if sets else set()


def finish(output: dict, stores: dict, tasks: list) -> bool:
    """Build pyramids and rename into place when every task of the stack is done; True when committed."""
    if len(done_keys(s.tmp_path for s in stores.values())) < len(tasks):
        return False
    for kind, s in stores.items():
        shutil.rmtree(s.tmp_path / DONE, ignore_errors=True)
        (s.tmp_path / FINGERPRINT).unlink(missing_ok=True)
        s.commit(labels=kind == "mask")
    return True


def predict_chunked(module, files: list[Path], out_dir: Path, *, threshold: float = 0.5, task_shape=(64, 1024, 1024),
                    chunks=(32, 256, 256), devices="auto", num_nodes: int = 1, accelerator: str = "auto",
                    overlap=None, sw_batch_size=None, z_chunk=None, z_stride=None, bf16: bool = False,
                    voxel_size=None, progress: bool = True, ckpt: str = "") -> list[dict]:
    """Predict every stack of `files` into OME-Zarr under `out_dir` with `Trainer.predict` (see the module
    docstring); returns one record per stack."""
    from neurovit.data.volumes import open_volume, spacing_differs
    from neurovit.predict import output_paths

    settings = {"autocast": None, **module.inference_settings(overlap=overlap, sw_batch_size=sw_batch_size,
                                                              z_chunk=z_chunk, z_stride=z_stride,
                                                              autocast=torch.bfloat16 if bf16 else None)}
    depth, roi = module.block_depth, module.roi_size
    halo = (depth if getattr(module.net, "out_slices", "center") == "all" else depth // 2, roi // 2, roi // 2)
    model_vs = module.preprocessing.voxel_size
    volumes, normalisers, tasks, outputs, records = [], [], [], [], []
    for i, f in enumerate(files):
        vol = open_volume(f, voxel_size=voxel_size)
        vs = vol.voxel_size or model_vs or (1.0, 1.0, 1.0)
        if vol.voxel_size and model_vs and spacing_differs(vol.voxel_size, model_vs):
            raise NeurovitError(f"{f.name}: voxel size {vol.voxel_size} µm differs from the model's {model_vs} by more "
                                "than 10 %; chunked OME-Zarr prediction does not resample yet: use --format tif, "
                                "or resample the stack to the model's spacing first")
        norm = module.preprocessing.normaliser.fit(vol.array)
        plan = plan_tasks(vol.shape, task_shape, chunks, halo)
        paths = output_paths(vol.name, out_dir, "ome-zarr")
        fingerprint = {"input": str(Path(f).resolve()), "shape": list(vol.shape), "checkpoint": str(ckpt),
                       "threshold": threshold, "task_shape": list(task_shape), "chunks": list(chunks),
                       "normaliser": [norm.offset, norm.scale, norm.clip],
                       **{k: (str(v) if k == "autocast" else v) for k, v in settings.items()}}
        volumes.append(vol.array)
        normalisers.append(norm)
        tasks.append(plan)
        outputs.append({"index": i, "prob": paths["prob"], "mask": paths["mask"], "shape": vol.shape,
                        "voxel_size": vs, "chunks": chunks, "fingerprint": fingerprint})
        records.append({"name": vol.name, "shape": list(vol.shape), "voxel_size": list(vs),
                        "voxel_size_from": "file" if vol.voxel_size else "assumed", "resampled_to": None,
                        "prob": str(paths["prob"]), "mask": str(paths["mask"]), "tasks": len(plan)})
    keys = []
    for i, o in enumerate(outputs):
        done = _already_done(o)
        keys += [(i, t.index) for t in tasks[i] if t.key not in done]
        records[i]["skipped_tasks"] = len(done)
    plan = {"tasks": tasks}
    predictor = ChunkPredictor(module, plan, normalisers, settings)
    predictor.dataset = ChunkDataset(volumes, tasks, keys)
    writer = ChunkWriter(outputs, plan, threshold)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, logger=False,
                        callbacks=[writer], enable_progress_bar=progress, enable_model_summary=False,
                        use_distributed_sampler=False, inference_mode=True,
                        strategy="ddp" if _several(devices, num_nodes) else "auto",
                        default_root_dir=str(out_dir))
    trainer.predict(predictor, return_predictions=False)
    if trainer.is_global_zero:
        for o, stores in zip(outputs, writer.stores, strict=False):  # e.g. all tasks done before a crash
            if not Path(o["prob"]).exists() and all(s.state == "open" for s in stores.values()):
                finish(o, stores, tasks[o["index"]])
        for r, o in zip(records, outputs, strict=True):
            r["committed"] = Path(o["prob"]).exists() and Path(o["mask"]).exists()
    return records if trainer.is_global_zero else []


def _already_done(output: dict) -> set[str]:
    """Task keys already marked done in an interrupted run's stores (empty when there is none)."""
    from neurovit.data.omezarr import partial_path

    return done_keys(partial_path(output[k]) for k in ("prob", "mask"))


def _several(devices, num_nodes: int) -> bool:
    if num_nodes > 1:
        return True
    if isinstance(devices, int):
        return devices > 1
    if isinstance(devices, str) and devices.isdigit():
        return int(devices) > 1
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    return devices in ("-1",) or (devices == "auto" and torch.cuda.device_count() > 1)


def local_rank() -> int:
    """This process's rank as Lightning's launcher sets it (0 before any launch)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
