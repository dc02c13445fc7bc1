"""The grid a config expands to: cells, arms that are skipped, and per-cell settings."""

import pytest

from arcal import grid


def test_paper_grid_has_the_papers_cells(paper_config):
    cells = grid.cells(paper_config)
    main = [c for c in cells if c.substrate in ("deit_s", "swin_t")]
    # 5 substrate/dataset cells x (baseline, block, full) x 3 seeds
    assert len(main) == 45
    routed_main = [c for c in main if c.routed]
    # the paper's 30 permutation tests per feature: 5 cells x 2 AR variants x 3 seeds
    assert len(routed_main) == 30
    pilot = [c for c in cells if c.substrate == "vit_b16"]
    assert {(c.variant, c.seed) for c in pilot} == {("block", 0), ("full", 0)}
    assert len(cells) == len(set(cells))


def test_finetune_arm_skipped_without_checkpoint_and_says_why(paper_config):
    reasons = grid.skipped_arms(paper_config)
    assert "finetune" in reasons
    assert "substrates.vit_b16_ft.checkpoint" in reasons["finetune"]
    assert not any(c.substrate == "vit_b16_ft" for c in grid.cells(paper_config))

    paper_config["substrates"]["vit_b16_ft"]["checkpoint"] = "/models/vit_b16.pth"
    ft = [c for c in grid.cells(paper_config) if c.substrate == "vit_b16_ft"]
    assert len(ft) == 9  # 3 datasets x {baseline, block, full}
    assert grid.train_settings(paper_config, ft[0])["init_checkpoint"] == "/models/vit_b16.pth"


def test_demo_grid_is_vit_and_swin_three_variants_three_seeds(demo_config):
    cells = grid.cells(demo_config)
    assert {c.dataset for c in cells} == {"fashion-mnist"}
    assert {c.substrate for c in cells} == {"vit_demo", "swin_demo"}
    assert {c.variant for c in cells} == {"baseline", "block", "full"}
    assert {c.seed for c in cells} == {0, 1, 2}
    assert len(cells) == 18


def test_unknown_dataset_in_an_arm_is_named(paper_config):
    paper_config["arms"]["main"]["cells"].append(["cifar11", "deit_s"])
    with pytest.raises(ValueError, match="'cifar11'.*not defined under 'datasets'"):
        grid.cells(paper_config)


def test_unknown_substrate_in_an_arm_is_named(paper_config):
    paper_config["arms"]["main"]["cells"].append(["cifar10", "resnet"])
    with pytest.raises(ValueError, match="'resnet'.*not defined under 'substrates'"):
        grid.cells(paper_config)


def test_train_settings_take_substrate_over_dataset_over_global(paper_config):
    paper_config["datasets"]["cifar10"]["train"] = {"lr": 0.5, "epochs": 7}
    paper_config["substrates"]["deit_s"]["train"] = {"lr": 0.25}
    settings = grid.train_settings(paper_config, grid.Cell("cifar10", "deit_s", "full", 2))
    assert settings["lr"] == 0.25
    assert settings["epochs"] == 7
    assert settings["batch_size"] == paper_config["train"]["batch_size"]
    assert (settings["variant"], settings["seed"], settings["substrate"]) == ("full", 2, "deit_s")


def test_temporal_cells_keep_snapshots(paper_config):
    temporal = grid.Cell("cifar10", "deit_s", "block", 0)
    other = grid.Cell("cifar100", "deit_s", "block", 0)
    assert temporal in grid.temporal_cells(paper_config)
    assert grid.train_settings(paper_config, temporal)["snapshot_stride"] == 4
    assert grid.train_settings(paper_config, other)["snapshot_stride"] == 0


def test_cell_id_round_trips_and_rejects_malformed():
    cell = grid.Cell("cifar10", "deit_s", "block", 3)
    assert grid.Cell.parse(cell.id) == cell
    with pytest.raises(ValueError, match="seed<N>"):
        grid.Cell.parse("cifar10/deit_s/block/3")
