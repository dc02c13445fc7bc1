"""Snakemake entry point of the data stage (rule `splits`)."""

from arcal import data, logs

logs.setup(snakemake.log[0])
s = snakemake.params.settings
ds = data.load_dataset(s["dataset"], s["root"], s["download"], s["kind"])
splits = data.make_splits(
    len(ds.x_train), len(ds.x_test), s["seed"], s["n_train"], s["n_calib"], s["n_test"]
)
data.write_splits(snakemake.output.splits, ds, splits, s["seed"])
