"""The `neurovit` console entry point: one subcommand per job.

    neurovit synth   --out DIR [...]            synthetic microscopy dataset (procedural or from SWC files)
    neurovit render  --swc F --out MASK.tif     ground-truth mask of an SWC file
    neurovit info    F.swc [...]                node/branch/length counts of SWC files
    neurovit evaluate --pred DIR --gold DIR     voxel and reconstruction metrics, CSV/JSON tables
    neurovit baseline --data DIR                Frangi + Otsu masks and their Dice (non-learned reference)
    neurovit ablate --config experiments/ablation.yaml
                                                strategies × seeds × data fractions, tables and figures
    neurovit prepare SRC --out DATASET          your images + SWC → a checked dataset folder (dataset.yaml)
    neurovit fit|validate|test --config base [--config X.yaml] [--key value ...]
                                                train / evaluate with LightningCLI (see `neurovit fit --help`)
    neurovit pretrain --config pretrain --data.data_dir PHOTOS|STACKS
                                                DINO self-supervised 2D ViT → RUN/backbone.pth for --init.source
    neurovit config [NAME]                      list / print the packaged configs (base, demo, center, ...)
    neurovit view STACK [--pred P --mask M --swc S]   napari: image, prediction and tree in µm (pip install neurovit[view])
    neurovit predict --ckpt C --input STACK|DIR --out DIR
                                                probability/mask TIFFs and traced SWC for any stacks
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from neurovit.errors import NeurovitError


def _triple(kind):
    def parse(values):
        return tuple(kind(v) for v in values)
    return parse


def _add_synth(sub) -> None:
    from neurovit.data.synth import MicroscopeParams, SynthConfig

    d, mp = SynthConfig(), MicroscopeParams()
    p = sub.add_parser("synth", help="write a synthetic light-microscopy dataset",
                       description="Write images/, labels/, swc/, dataset.yaml and preview.png. Without "
                       "--swc-dir, neurons are grown procedurally; with it, every *.swc file becomes one "
                       "volume (large cells are cropped to --max-shape around their root).")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--n-volumes", type=int, default=d.n_volumes, help="procedural volumes (default %(default)s)")
    p.add_argument("--shape", nargs=3, type=int, default=d.shape, metavar=("Z", "Y", "X"),
                   help="procedural volume shape in voxels (default %(default)s)")
    p.add_argument("--voxel-size", nargs=3, type=float, default=mp.voxel_size, metavar=("VZ", "VY", "VX"),
                   help="voxel size in µm, (z, y, x) (default %(default)s)")
    p.add_argument("--swc-dir", type=Path, default=None, help="render these SWC files (µm) instead")
    p.add_argument("--max-shape", nargs=3, type=int, default=d.max_shape, metavar=("Z", "Y", "X"),
                   help="crop SWC volumes larger than this around the root; 0 0 0 = no crop (default %(default)s)")
    p.add_argument("--snr", nargs=2, type=float, default=mp.snr, metavar=("LO", "HI"),
                   help="SNR = (S-B)/sqrt(S) drawn uniformly per volume (default %(default)s)")
    p.add_argument("--neurons", nargs=2, type=int, default=d.neurons_per_volume, metavar=("MIN", "MAX"),
                   help="procedural neurons per volume (default %(default)s)")
    p.add_argument("--split", nargs=3, type=float, default=d.split, metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions (default %(default)s); SWC 'split:' headers take precedence")
    p.add_argument("--split-file", type=Path, default=None,
                   help="YAML {train: [names], val: [...], test: [...]}: our own split of the SWC files, in place "
                   "of their 'split:' headers")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    import dataclasses

    import yaml

    from neurovit.data.synth import MicroscopeParams, SynthConfig, read_split_file, synthesize_dataset

    micro = dataclasses.replace(MicroscopeParams(), voxel_size=tuple(args.voxel_size), snr=tuple(args.snr))
    max_shape = None if all(s == 0 for s in args.max_shape) else tuple(args.max_shape)
    cfg = SynthConfig(n_volumes=args.n_volumes, shape=tuple(args.shape), seed=args.seed,
                      neurons_per_volume=tuple(args.neurons), split=tuple(args.split),
                      swc_dir=None if args.swc_dir is None else str(args.swc_dir), max_shape=max_shape,
                      microscope=micro, split_names=None if args.split_file is None else read_split_file(args.split_file))
    out = synthesize_dataset(args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    vols = meta["volumes"]
    fg = sum(v["foreground_fraction"] for v in vols) / len(vols)
    print(f"wrote {len(vols)} volumes to {out} (train {len(meta['split']['train'])}, "
          f"val {len(meta['split']['val'])}, test {len(meta['split']['test'])}); "
          f"mean foreground {100 * fg:.2f}% of voxels; preview: {out / 'preview.png'}")
    return 0


def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render the ground-truth mask of an SWC file as a TIFF",
                       description="Capsule-union mask of an SWC file in µm, fitted to a new volume "
                       "with --margin µm around the neuron (or on a given --shape grid at the SWC's origin).")
    p.add_argument("--swc", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="output mask TIFF (uint8)")
    p.add_argument("--voxel-size", nargs=3, type=float, default=(1.0, 1.0, 1.0), metavar=("VZ", "VY", "VX"))
    p.add_argument("--shape", nargs=3, type=int, default=None, metavar=("Z", "Y", "X"),
                   help="grid shape; default: fitted to the neuron")
    p.add_argument("--margin", type=float, default=5.0, help="µm around the neuron when fitting (default 5)")
    p.add_argument("--units", choices=("um", "voxel"), default="um", help="units of the SWC coordinates")
    p.set_defaults(func=_run_render)


def _run_render(args) -> int:
    import time

    from neurovit.data.render import fit_to_volume, render_mask
    from neurovit.data.swc import read_swc
    from neurovit.data.tiff import write_stack

    m = read_swc(args.swc, units=args.units)
    vs = tuple(args.voxel_size)
    if args.shape is None:
        m, shape = fit_to_volume(m.to_um(vs), vs, args.margin)
    else:
        shape = tuple(args.shape)
    t0 = time.perf_counter()
    mask = render_mask(m, shape, vs)
    dt = time.perf_counter() - t0
    write_stack(args.out, mask.astype("uint8"), voxel_size=vs)
    print(f"{args.swc.name}: {m.n_nodes} nodes → mask {shape} (z, y, x) at {vs} µm, "
          f"{int(mask.sum())} foreground voxels, rendered in {dt:.2f} s → {args.out}")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="summarise SWC files (nodes, roots, branches, tips, length)")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    from neurovit.data.swc import read_swc

    for f in args.files:
        s = read_swc(f).summary()
        print(f"{f.name}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    return 0


class _FileArgsParser(argparse.ArgumentParser):
    """Subcommand parser that also expands @FILE arguments (one or more arguments per line)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fromfile_prefix_chars", "@")
        super().__init__(*args, **kwargs)

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        line = arg_line.split("#", 1)[0]
        return line.split()


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score predictions against ground truth (voxel + reconstruction metrics)",
                       description="Match prediction TIFFs/SWCs to ground truth by file name; compute Dice, "
                       "clDice, precision, recall, ESA/DSA/PDS and node P/R/F1; write metrics.csv/json.")
    p.add_argument("--pred", required=True, type=Path, help="folder of NAME.tif probabilities/masks (+ NAME.swc)")
    p.add_argument("--gold", required=True, type=Path, help="dataset folder (labels/, swc/) or folder of TIFF/SWC")
    p.add_argument("--out", type=Path, default=None, help="where to write the tables (default: --pred)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--dist-threshold", type=float, default=2.0, help="DSA/PDS/node distance (default 2)")
    p.add_argument("--units", choices=("voxel", "um"), default="voxel", help="distance units of the metrics")
    p.add_argument("--voxel-size", nargs=3, type=float, default=None, metavar=("VZ", "VY", "VX"))
    p.add_argument("--split", default=None, help="with a dataset as --gold: only its volumes of this split "
                   "(e.g. val), so the others are not listed as missing predictions")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    import warnings

    from neurovit.evaluate import evaluate_folders, format_summary

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing files are listed in the summary instead
        result = evaluate_folders(args.pred, args.gold, args.out or args.pred, threshold=args.threshold,
                                  voxel_size=args.voxel_size, dist_threshold=args.dist_threshold,
                                  metric_units=args.units, progress=True, split=args.split)
    print(format_summary(result))
    return 0


def _add_baseline(sub) -> None:
    p = sub.add_parser("baseline", help="non-learned Frangi + Otsu segmentation of a dataset split, with Dice",
                       description="Segment the volumes of one split with Gaussian smoothing + 3D Frangi "
                       "vesselness + Otsu threshold, write the masks, and print their Dice against the labels.")
    p.add_argument("--data", required=True, type=Path, help="dataset folder")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--out", type=Path, default=None, help="folder for NAME.tif masks (default: not written)")
    p.set_defaults(func=_run_baseline)


def _run_baseline(args) -> int:
    import numpy as np

    from neurovit.baselines import frangi_otsu
    from neurovit.data.folder import ensure_label, open_dataset
    from neurovit.data.volumes import open_volume, write_volume
    from neurovit.metrics import dice

    ds = open_dataset(args.data)
    records = ds.volumes(args.split)
    if not records:
        print(f"neurovit baseline: {args.data} has no {args.split} volumes", file=sys.stderr)
        return 2
    scores = []
    for r in records:
        mask = frangi_otsu(open_volume(r.image).read())
        scores.append(dice(mask, open_volume(ensure_label(r, ds)).read() > 0))
        if args.out is not None:
            write_volume(args.out / f"{r.name}.tif", mask.astype(np.uint8), voxel_size=ds.voxel_size)
        print(f"{r.name}: Frangi + Otsu Dice {scores[-1]:.4f}")
    print(f"Frangi + Otsu baseline, {args.split} split: mean Dice {np.mean(scores):.4f} over {len(scores)} volumes")
    return 0


def _add_config(sub) -> None:
    p = sub.add_parser("config", help="list the packaged configs, or print one (to start your own)",
                       description="Configs ship with the package: `neurovit fit --config base --config demo` "
                       "works anywhere; `neurovit config base > my.yaml` gives a file to edit.")
    p.add_argument("name", nargs="?", default=None, help="config name (e.g. base, demo, center)")
    p.set_defaults(func=_run_config)


def _run_config(args) -> int:
    from neurovit.configs import config_path, list_configs

    if args.name is None:
        for name, first_line in list_configs().items():
            print(f"{name:<16}{first_line}")
        return 0
    sys.stdout.write(config_path(args.name).read_text(encoding="utf-8"))
    return 0


def _add_view(sub) -> None:
    from neurovit.view import add_view_parser  # napari itself is imported only when a viewer opens

    add_view_parser(sub)


def _add_prepare(sub) -> None:
    from neurovit.data.prepare import add_prepare_parser

    add_prepare_parser(sub)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names the bad value)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _add_predict(sub) -> None:
    from neurovit.data.volumes import supported_suffixes

    p = sub.add_parser("predict", help="segment stacks with a checkpoint: probability/mask volumes + traced SWC",
                       description="Whole-volume sliding-window prediction of image stacks with a checkpoint "
                       "written by `neurovit fit`, then tracing into SWC (µm). Each stack is normalised with the "
                       "checkpoint's normaliser and, when its voxel size differs from the model's by more than "
                       "10 %, resampled to the model's spacing and back. Outputs are named after the input's "
                       "full stem: NAME_prob.tif, NAME_mask.tif, NAME.swc; `neurovit evaluate --pred OUT` "
                       "scores them.")
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint (RUN/checkpoints/last.ckpt or best-*.ckpt)")
    p.add_argument("--input", required=True, type=Path,
                   help=f"an image stack or a folder of them ({supported_suffixes()})")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--save", choices=("prob", "mask", "both"), default="prob",
                   help="write NAME_prob (float32), NAME_mask (uint8) or both (default prob)")
    p.add_argument("--format", dest="out_format", choices=("tif", "ome-zarr"), default="tif",
                   help="output format (default tif: float32 probabilities, one process). ome-zarr: chunked, "
                   "resumable, any number of devices/nodes (Lightning); uint8 probabilities round(255 p) and "
                   "the mask, with a multiscale pyramid")
    p.add_argument("--devices", default="auto", help="ome-zarr: devices per node, as Lightning's Trainer "
                   "(auto, 2, 0,1,...; default auto)")
    p.add_argument("--num-nodes", type=_positive_int, default=1, help="ome-zarr: nodes (torchrun / SLURM)")
    p.add_argument("--chunk", nargs=3, type=_positive_int, default=(64, 1024, 1024), metavar=("Z", "Y", "X"),
                   help="ome-zarr: voxels per task (a multiple of the 32 x 256 x 256 output chunks; default "
                   "%(default)s)")
    p.add_argument("--threshold", type=float, default=0.5, help="mask/tracing threshold (default 0.5)")
    p.add_argument("--no-trace", action="store_true", help="skip tracing (no NAME.swc)")
    p.add_argument("--voxel-size", nargs=3, type=float, default=None, metavar=("VZ", "VY", "VX"),
                   help="µm (z, y, x); default from the file's metadata; when it has none, the model's "
                   "training voxel size is assumed (with a warning, recorded in the outputs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--overlap", type=float, default=None, help="sliding-window overlap (default: the model's)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="windows per forward pass (default: the model's)")
    p.add_argument("--z-stride", type=_positive_int, default=None,
                   help="all-slices models: slices between block centres (default: the model's, else D // 2 + 1)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on recent GPUs; slower on CPUs "
                   "without bf16 units)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--compile", action="store_true", help="torch.compile the network once for all stacks (about "
                   "a minute of compilation on CPU, then 1.4-1.9x faster there; for large or many stacks)")
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> int:
    from neurovit.predict import run_predict

    _, failures = run_predict(args.ckpt, args.input, args.out, device=args.device, threshold=args.threshold, save=args.save,
                trace=not args.no_trace, voxel_size=args.voxel_size, overlap=args.overlap, out_format=args.out_format,
                sw_batch_size=args.batch_size, z_stride=args.z_stride, bf16=args.bf16, compile=args.compile,
                progress=not args.no_progress, devices=_devices(args.devices), num_nodes=args.num_nodes,
                task_shape=tuple(args.chunk))
    if args.out_format == "tif" and (str(args.devices) not in ("auto", "1") or args.num_nodes > 1):
        print("neurovit predict: note: --devices/--num-nodes apply to --format ome-zarr", file=sys.stderr)
    return 1 if failures else 0


def _devices(text: str):
    """--devices as Lightning takes it: 'auto', an int, or a list of indices ('0,1')."""
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t]
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    from neurovit import __version__

    parser = _FileArgsParser(prog="neurovit", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="Arguments can also be read from a file: neurovit synth @FILE.args")
    parser.add_argument("--version", action="version", version=f"neurovit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub._parser_class = _FileArgsParser
    from neurovit.ablate.cli import add_ablate_parser

    for add in (_add_synth, _add_prepare, _add_render, _add_info, _add_evaluate, _add_baseline, add_ablate_parser,
                _add_config, _add_view):
        add(sub)
    for cmd, what in zip(LIGHTNING_COMMANDS, ("train a model", "validate a checkpoint on the val volumes",
                                                   "test a checkpoint on the test volumes")):
        sub.add_parser(cmd, help=f"{what} (LightningCLI; `neurovit {cmd} --help` lists every option)", add_help=False)
    sub.add_parser("pretrain", help="DINO self-supervised pretraining of a 2D ViT on photos or unlabelled stacks "
                   "(LightningCLI; `neurovit pretrain --help` lists every option)", add_help=False)
    _add_predict(sub)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; input errors print one clear line (exit 2) instead of a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in (*LIGHTNING_COMMANDS, "pretrain"):
        if argv[0] == "pretrain":
            from neurovit.pretrain.cli import run as run_pretrain

            def run(args):
                return run_pretrain(args[1:])
        else:
            from neurovit.lit.cli import run

        try:
            return run(argv)
        except NeurovitError as exc:
            print(f"neurovit {argv[0]}: error: {exc}", file=sys.stderr)
            return 2
        except SystemExit as exc:
            return _terminated(argv[0], exc)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeurovitError as exc:
        print(f"neurovit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return _terminated(args.command, exc)


SIGTERM_EXIT = 143  # 128 + SIGTERM, as a shell reports a process ended by it


def _terminated(command: str, exc: SystemExit) -> int:
    """Lightning ends a run that received SIGTERM (a scheduler's pre-emption, `kill`) at the end of the epoch
    or batch with SIGTERMException, a SystemExit whose code is None, i.e. exit status 0: a cut-short training
    would look successful. It becomes exit status 143 and a line saying how to go on; other SystemExits pass."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if not isinstance(exc, SIGTERMException):
        raise exc
    how = {"fit": "RUN/checkpoints/last.ckpt holds the last finished epoch: resume with --ckpt_path last",
           "pretrain": "RUN/checkpoints/last.ckpt holds the last finished epoch: resume with --ckpt_path last",
           "predict": "chunks already written are kept: run the same command again to finish"}
    print(f"neurovit {command}: terminated by SIGTERM before the end; {how.get(command, 'run it again')}",
          file=sys.stderr)
    return SIGTERM_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
