"""Equal-width confidence bins (the project's one binning convention).

Bin k of ``n_bins`` holds k/n_bins <= c < (k+1)/n_bins; the last bin also holds c == 1.0. This is
numpy.histogram's and netcal's convention ("left-closed, last bin closed"). The index is computed
with ``searchsorted`` against the float64 ``linspace`` edges, so a confidence equal to an interior
edge always lands in the upper bin, with no ``floor(c * n_bins)`` rounding surprises.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_int


def bin_edges(n_bins: int) -> np.ndarray:
    """The n_bins + 1 edges ``linspace(0, 1, n_bins + 1)``."""
    return np.linspace(0.0, 1.0, check_int(n_bins, "n_bins", 1) + 1)


def bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence (int64 in [0, n_bins)); ``conf`` must already lie in [0, 1]."""
    edges = bin_edges(n_bins)
    return np.searchsorted(edges[1:-1], conf, side="right").astype(np.int64)


def bin_sums(
    conf: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, sum of confidence, sum of correctness), each of length n_bins."""
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    s_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    s_corr = np.bincount(idx, weights=correct, minlength=n_bins)
    return count, s_conf, s_corr
