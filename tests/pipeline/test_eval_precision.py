"""Evaluation and dumps run in float32 whatever the training precision (arcal.train.predict).

On the GPU training runs under bf16 autocast; logits computed there would carry bf16 precision
(ties of the top logits, ECE moved in the fourth decimal) even when stored as float32. These
checks emulate the GPU on the CPU: `arcal.train.autocast` (the training precision) is made a CPU
bf16 autocast, which changes a model's logits in the same way, and the caller has one on too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arcal.train as train_mod
from arcal.data import load_dataset, load_splits, normalize
from arcal.dump import dump, load_model
from arcal.io import load_dump
from arcal.models import create_model
from arcal.train import predict

CPU = torch.device("cpu")
MEAN, STD = (0.45,), (0.25,)


@pytest.fixture
def bf16_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU's training precision (bf16 autocast), emulated on the CPU."""
    monkeypatch.setattr(train_mod, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))


def test_predict_is_float32_inside_bf16_autocast(bf16_training) -> None:
    torch.manual_seed(0)
    model = create_model("vit_demo", "block", 10, 16, 1)
    with torch.no_grad():
        for m in model.attnres:
            m.query.normal_(0, 0.3)
    x = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
    ref = predict(model, x, MEAN, STD, 10, CPU, capture=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = predict(model, x, MEAN, STD, 10, CPU, capture=True)
        with torch.no_grad():  # what the same model gives under this autocast
            cast = model.eval()(normalize(x, MEAN, STD)).float().numpy()
    assert got.logits.dtype == np.float32
    np.testing.assert_array_equal(got.logits, ref.logits)
    np.testing.assert_array_equal(got.routing.H, ref.routing.H)
    np.testing.assert_array_equal(got.routing.V, ref.routing.V)
    assert np.abs(cast - ref.logits).max() > 1e-3  # so autocast would have mattered
    assert model.training is False  # predict restores the mode it found (eval, set above)


def test_dump_logits_are_float32_evaluations(bf16_training, trained, tiny_data, tmp_path) -> None:
    """A dump written inside bf16 autocast holds the logits of a float64 evaluation of the same
    model to float32 rounding, and the same bytes as a dump written without autocast."""
    model_path = trained["full"] / "model.pt"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dump(model_path, tiny_data["splits"], tmp_path / "cast", device="cpu")
    dump(model_path, tiny_data["splits"], tmp_path / "plain", device="cpu")
    cast, plain = load_dump(tmp_path / "cast" / "test.npz"), load_dump(tmp_path / "plain" / "test.npz")
    assert cast.logits.dtype == np.float32
    np.testing.assert_array_equal(cast.logits, plain.logits)
    np.testing.assert_array_equal(cast.depth_var, plain.depth_var)

    model, record = load_model(model_path, CPU)
    ds = load_dataset("tiny", tiny_data["root"], kind="npz")
    x = ds.x_test[load_splits(tiny_data["splits"], ds)["test"]]
    with torch.no_grad():
        exact = model.double()(normalize(x, record["mean"], record["std"]).double()).numpy()
    assert np.abs(cast.logits - exact).max() < 1e-4 * max(1.0, np.abs(exact).max())
