"""Snakemake entry point of the data stage (rule `splits`)."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal import data

s = snakemake.params.settings
ds = data.load_dataset(s["dataset"], s["root"], s["download"], s["kind"])
splits = data.make_splits(
    len(ds.x_train), len(ds.x_test), s["seed"], s["n_train"], s["n_calib"], s["n_test"]
)
data.write_splits(snakemake.output.splits, ds, splits, s["seed"])
