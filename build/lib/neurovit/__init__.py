"""neurovit: neuron segmentation in 3D light microscopy with 2D-to-3D transferred Vision Transformers.

A small Python API (imported lazily, so `import neurovit` stays light):

    model = neurovit.load_model("run/checkpoints/last.ckpt")           # a SegmentationModule, eval mode
    prob = neurovit.segment(model, stack, voxel_size=(2.0, 0.5, 0.5))  # raw stack → probabilities
    tree = neurovit.trace(prob > 0.5, voxel_size=(2.0, 0.5, 0.5))      # → SWC Morphology (voxel units)
    vol = neurovit.open_volume("cell.ome.tif")                         # any supported format, lazily
    gold = neurovit.read_swc("cell.swc")
    result = neurovit.evaluate("pred/", "dataset/")                    # Dice, clDice, ESA/DSA/PDS, ...
"""

from __future__ import annotations

from typing import Any

from neurovit.errors import NeurovitError

__version__ = "0.2.0"

_LAZY = {
    "load_model": "neurovit.predict",
    "segment": "neurovit.predict",
    "open_volume": "neurovit.data.volumes",
    "write_volume": "neurovit.data.volumes",
    "read_swc": "neurovit.data.swc",
    "write_swc": "neurovit.data.swc",
    "trace": "neurovit.trace",
    "evaluate": "neurovit.evaluate",
}

__all__ = ["NeurovitError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        module = import_module(_LAZY[name])
        return getattr(module, "evaluate_folders" if name == "evaluate" else name)
    raise AttributeError(f"module 'neurovit' has no attribute {name!r}")
