"""Snakemake entry point of the train stage (rule `train`)."""

from pathlib import Path

from arcal import logs
from arcal.train import TrainConfig, train

logs.setup(snakemake.log[0])
cfg = TrainConfig.from_dict({**snakemake.params.settings, "splits": snakemake.input.splits})
train(cfg, Path(snakemake.output.model).parent)
