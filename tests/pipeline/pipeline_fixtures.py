"""Helpers of the pipeline tests: a tiny learnable npz dataset and a few-second run config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arcal.train_config import TrainConfig

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST.exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


def make_npz(
    path: Path, n_train: int = 256, n_test: int = 128, size: int = 16, seed: int = 0
) -> Path:
    """Noisy grey images of four textures (horizontal / vertical stripes, checkerboard, flat):
    every patch shows its class, so a small ViT learns it in a few dozen steps."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    textures = (
        np.stack([(i // 2) % 2, (j // 2) % 2, (i // 2 + j // 2) % 2, np.full_like(i, 0)]) * 140 + 60
    )

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = textures[y] + rng.integers(-50, 50, (n, size, size))
        return x.clip(0, 255).astype(np.uint8), y

    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    np.savez(
        path,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=np.array(["horizontal", "vertical", "checker", "flat"]),
    )
    return path


def tiny_config(tiny_data: dict[str, str], **kw: object) -> TrainConfig:
    """A run of a few seconds: vit_demo on the tiny dataset, one CPU thread."""
    base = dict(
        dataset="tiny",
        kind="npz",
        data_root=tiny_data["root"],
        splits=tiny_data["splits"],
        substrate="vit_demo",
        variant="full",
        epochs=2,
        batch_size=32,
        eval_batch_size=64,
        lr=3e-3,
        warmup_epochs=0.5,
        device="cpu",
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)
