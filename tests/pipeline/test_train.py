"""Training: config validation, resume, determinism, checkpoints, non-finite loss (arcal.train)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import arcal.train as train_mod
from arcal.train import (
    HISTORY_COLUMNS,
    CheckpointError,
    NonFiniteLossError,
    lr_at,
    main,
    param_groups,
    train,
)
from arcal.train_config import TrainConfig

from pipeline_fixtures import tiny_config


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_config_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown TrainConfig field.*'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="variant='fuzzy'"):
        TrainConfig.from_dict({"variant": "fuzzy"})
    with pytest.raises(ValueError, match="min_lr=0.01: is above the peak learning rate TrainConfig.lr=0.001"):
        TrainConfig.from_dict({"lr": 1e-3, "min_lr": 1e-2})
    with pytest.raises(ValueError, match="warmup_epochs=5: is longer than training, TrainConfig.epochs=2"):
        TrainConfig.from_dict({"epochs": 2, "warmup_epochs": 5})
    assert TrainConfig.from_dict({"epochs": 4}).label_smoothing == 0.0


def test_lr_schedule_warms_up_linearly_then_decays_to_min_lr() -> None:
    lrs = [lr_at(s, total=100, warmup=10, lr=1.0, min_lr=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] > 0.1


def test_no_weight_decay_on_one_dimensional_parameters() -> None:
    from arcal.models import create_model

    model = create_model("vit_demo", "full", num_classes=4, img_size=16, in_chans=1)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert any("query" in n for n in skipped) and "pos_embed" in skipped and "cls_token" in skipped


def _killed_after_checkpoint(cfg: TrainConfig, out: Path, epoch: int, monkeypatch) -> None:
    """Train until the checkpoint of `epoch` is written, then die as a killed job would."""
    real_save = train_mod.atomic_torch_save

    def save_then_die(path, obj):
        real_save(path, obj)
        if Path(path).name == "checkpoint.pt" and obj["epoch"] == epoch:
            raise KeyboardInterrupt("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(train_mod, "atomic_torch_save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out)
    assert (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(
    tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="arcal.train")
    cfg = tiny_config(
        tiny_data, epochs=3, crop_padding=2, flip=True, drop_path=0.1, snapshot_stride=1
    )
    train(cfg, tmp_path / "straight")
    _killed_after_checkpoint(cfg, tmp_path / "resumed", 2, monkeypatch)
    train(cfg, tmp_path / "resumed")
    assert f"resuming {tmp_path / 'resumed'} from epoch 2 of 3" in caplog.text

    _assert_same_weights(tmp_path / "straight" / "model.pt", tmp_path / "resumed" / "model.pt")
    a, b = (pd.read_csv(tmp_path / r / "history.csv") for r in ("straight", "resumed"))
    assert list(a.columns) == HISTORY_COLUMNS and len(a) == 3
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    for epoch in (1, 2, 3):  # the snapshots written before the kill survive it
        name = f"snapshots/epoch{epoch}.pt"
        _assert_same_weights(tmp_path / "straight" / name, tmp_path / "resumed" / name)
    assert not (tmp_path / "resumed" / "snapshots.partial").exists()


def test_same_seed_same_weights_other_seed_other_weights(tiny_data, tmp_path) -> None:
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(
            tiny_config(tiny_data, epochs=1, seed=seed, variant="block", block_size=2),
            tmp_path / name,
        )
    _assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    with pytest.raises(AssertionError):
        _assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "c" / "model.pt")


def test_deterministic_mode_skips_the_nan_fill_and_restores_both_settings() -> None:
    settings = torch.utils.deterministic
    assert not torch.are_deterministic_algorithms_enabled() and settings.fill_uninitialized_memory
    with train_mod.deterministic(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert not settings.fill_uninitialized_memory
    assert not torch.are_deterministic_algorithms_enabled() and settings.fill_uninitialized_memory


def test_truncated_checkpoint_is_an_error_not_a_silent_restart(
    tiny_data, tmp_path, monkeypatch
) -> None:
    cfg = tiny_config(tiny_data, epochs=2)
    _killed_after_checkpoint(cfg, tmp_path, 1, monkeypatch)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated.*delete it"):
        train(cfg, tmp_path)


def test_checkpoint_of_other_settings_is_removed_and_training_starts_afresh(
    tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="arcal.train")
    _killed_after_checkpoint(
        tiny_config(tiny_data, epochs=2, snapshot_stride=1), tmp_path / "run", 1, monkeypatch
    )
    new = tiny_config(tiny_data, epochs=2, lr=1e-3, snapshot_stride=1)
    train(new, tmp_path / "run")
    assert "resuming" not in caplog.text
    assert re.search(r"checkpoint .*checkpoint\.pt is not resumed: it was written for other weights "
                     r"\(lr: 0\.003 -> 0\.001\); removed it, training from scratch", caplog.text)
    train(new, tmp_path / "fresh")  # the same as a run that never saw the old checkpoint
    _assert_same_weights(tmp_path / "run" / "model.pt", tmp_path / "fresh" / "model.pt")
    for name in ("model.pt", "snapshots/epoch1.pt"):
        assert torch.load(tmp_path / "run" / name, weights_only=False)["train_config"]["lr"] == 1e-3


def test_changes_that_do_not_change_the_weights_resume(
    tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="arcal.train")
    _killed_after_checkpoint(tiny_config(tiny_data, epochs=2), tmp_path, 1, monkeypatch)
    train(tiny_config(tiny_data, epochs=2, eval_batch_size=16, threads=2), tmp_path)
    assert f"resuming {tmp_path} from epoch 1 of 2" in caplog.text


def test_changed_model_code_or_data_is_named_and_restarts(
    tiny_data, tmp_path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="arcal.train")
    cfg = tiny_config(tiny_data, epochs=2)
    _killed_after_checkpoint(cfg, tmp_path, 1, monkeypatch)
    real = train_mod.code_digests()
    monkeypatch.setattr(
        train_mod, "code_digests", lambda: {**real, "arcal/models/attnres.py": "fixed"}
    )
    train(cfg, tmp_path)
    assert "other weights (the code of arcal/models/attnres.py)" in caplog.text
    assert "resuming" not in caplog.text


def test_finished_run_keeps_no_checkpoint_unless_asked_and_a_rerun_retrains(
    tiny_data, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="arcal.train")
    train(tiny_config(tiny_data, epochs=2), tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "history.csv", "model.pt", "snapshots"
    ]
    cfg = tiny_config(tiny_data, epochs=2, keep_checkpoint=True)
    train(cfg, tmp_path / "kept")
    ckpt = torch.load(tmp_path / "kept" / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and "optimizer" in ckpt
    model = torch.load(tmp_path / "kept" / "model.pt", weights_only=False)
    assert ckpt["key"] == model["key"]

    caplog.clear()
    (tmp_path / "kept" / "model.pt").unlink()  # what Snakemake does before a forced rerun
    train(cfg, tmp_path / "kept")
    assert "it is the checkpoint of a finished run (epoch 2 of 2)" in caplog.text
    assert "resuming" not in caplog.text
    trained_epochs = [r for r in caplog.records if ": epoch " in r.getMessage()]
    assert len(trained_epochs) == 2  # both epochs trained again
    _assert_same_weights(tmp_path / "plain" / "model.pt", tmp_path / "kept" / "model.pt")


def test_a_rerun_after_a_code_fix_gets_the_fixed_model(tiny_data, tmp_path, monkeypatch) -> None:
    """Issue 13's first trap: rerunning a finished run must retrain, not return the old weights."""
    cfg = tiny_config(tiny_data, epochs=1)
    train(cfg, tmp_path)
    before = _weights(tmp_path / "model.pt")
    real_build = train_mod.build_model

    def fixed_build(cfg, ds):  # a "bug fix" that changes the initial weights
        torch.manual_seed(12345)
        return real_build(cfg, ds)

    monkeypatch.setattr(train_mod, "build_model", fixed_build)
    train(cfg, tmp_path)
    after = _weights(tmp_path / "model.pt")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_non_finite_loss_names_epoch_and_step(tiny_data, tmp_path, monkeypatch) -> None:
    real_ce, calls = train_mod.F.cross_entropy, []

    def ce(*args, **kwargs):
        calls.append(1)
        loss = real_ce(*args, **kwargs)
        return (
            loss * float("nan") if len(calls) == 8 + 3 else loss
        )  # epoch 2 (8 steps each), step 3

    monkeypatch.setattr(train_mod.F, "cross_entropy", ce)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3 of 8"):
        train(tiny_config(tiny_data, epochs=2), tmp_path)


def test_huge_learning_rate_stops_with_non_finite_loss(tiny_data, tmp_path) -> None:
    with pytest.raises(NonFiniteLossError, match="epoch 1, step"):
        train(tiny_config(tiny_data, epochs=1, lr=1e30, warmup_epochs=0), tmp_path)


def test_snapshots_and_outputs(trained) -> None:
    run = trained["full"]
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "epoch1.pt",
        "epoch2.pt",
        "epoch3.pt",
    ]
    record = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    assert record["epoch"] == 3 and record["arcal_config"]["variant"] == "full"
    assert record["train_config"]["label_smoothing"] == 0.0 and len(record["classes"]) == 4
    history = pd.read_csv(run / "history.csv")
    assert (
        history["epoch"].tolist() == [1, 2, 3]
        and history["test_acc"].iloc[-1] == record["test_acc"]
    )
    assert history["test_acc"].iloc[-1] > 0.5  # 4 classes: chance is 0.25


def test_cli_reads_yaml_and_overrides(tiny_data, tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"dataset: tiny\nkind: npz\ndata_root: {tiny_data['root']}\nsplits: {tiny_data['splits']}\n"
        "substrate: vit_demo\nvariant: baseline\nepochs: 3\nbatch_size: 64\ndevice: cpu\nthreads: "
        "1\n"
    )
    main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--set", "epochs=1", "lr=0.004"])
    record = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=False)
    assert record["train_config"]["epochs"] == 1 and record["train_config"]["lr"] == 0.004
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        main(["--config", str(cfg), "--out", str(tmp_path / "x"), "--set", "learning_rate=1"])


def test_compile_flag_trains_the_same_model_as_eager(tiny_data, tmp_path) -> None:
    """`compile: true` wraps the model in torch.compile (the GPU path's option); on the CPU it
    must train the same model as eager execution, up to floating-point reassociation."""
    pytest.importorskip("torch._inductor")
    for name, compiled in (("eager", False), ("compiled", True)):
        train(tiny_config(tiny_data, epochs=1, variant="full", compile=compiled), tmp_path / name)
    we, wc = _weights(tmp_path / "eager" / "model.pt"), _weights(tmp_path / "compiled" / "model.pt")
    assert we.keys() == wc.keys()
    for k in we:
        torch.testing.assert_close(wc[k], we[k], rtol=1e-3, atol=1e-4, msg=k)
    history = pd.read_csv(tmp_path / "compiled" / "history.csv")
    assert history["train_loss"].notna().all()


def test_a_step_frees_its_graph_so_the_next_step_reuses_the_source_bank() -> None:
    """The training step returns only detached numbers, so its graph (and an AttnRes model's
    source bank) is freed before the next step, whose bank then takes the same blocks."""
    from arcal.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_demo", "full", 10, 28, 1).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    (buffers,) = model.attnres_buffers
    spares = buffers.spares
    kept = []
    for _ in range(2):
        loss, correct = train_mod._step(model, opt, x, y, 0.0, torch.device("cpu"))
        assert loss.grad_fn is None and correct.grad_fn is None
        kept.append({name: block.data_ptr() for name, block in spares.items()})
    assert set(kept[0]) == {"values", "scores", "out_grads", "weights", "out_dots"}
    assert kept[1] == kept[0]
