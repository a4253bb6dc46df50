"""Non-learned reference segmentation, to check that a trained model beats it on the same volumes."""

from __future__ import annotations

import numpy as np


def frangi_otsu(image: np.ndarray, sigmas: tuple[float, ...] = (1.0, 2.0),
                smoothing: tuple[float, float, float] = (0.5, 1.0, 1.0)) -> np.ndarray:
    """Binary mask: Gaussian pre-smoothing (σ per axis, voxels) → 3D Frangi vesselness for bright tubes
    (scales `sigmas`, voxels) on the robustly normalised stack → Otsu threshold of the positive responses."""
    from scipy import ndimage
    from skimage.filters import frangi, threshold_otsu

    from neurovit.viz import robust_normalise

    img = ndimage.gaussian_filter(robust_normalise(image, 1.0, 99.8), smoothing)
    ves = frangi(img, sigmas=list(sigmas), black_ridges=False)
    positive = ves[ves > 0]
    if positive.size == 0 or positive.min() == positive.max():
        return np.zeros(image.shape, dtype=bool)
    return ves > threshold_otsu(positive)
