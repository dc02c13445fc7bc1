"""Snakemake entry point of the train stage (rule `train`)."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.train import train
from arcal.train_config import TrainConfig

# The rule's threads (`--set-threads train=N`), not a config key: they do not change the weights.
cfg = TrainConfig.from_dict(
    {**snakemake.params.settings, "splits": snakemake.input.splits, "threads": snakemake.threads}
)
train(cfg, Path(snakemake.output.model).parent)
