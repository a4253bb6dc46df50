"""neurovit: neuron segmentation in 3D light microscopy with 2D-to-3D transferred Vision Transformers."""

from neurovit.errors import NeurovitError

__version__ = "0.1.0"

__all__ = ["NeurovitError", "__version__"]
