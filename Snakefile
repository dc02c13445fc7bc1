# arcal: Probing Routing-Conditional Calibration in Attention-Residual Transformers.
#
# Method, one stage per rule file:
#   data         deterministic train / calibration / test splits per dataset
#   train        an Attention-Residual ViT or Swin per (dataset, substrate, variant, seed)
#   dump         logits and routing traces of the calibration and test splits
#   temporal     the temporal pilot: snapshot ensembles against final models
#   calibrate    probe-free metrics, and calibration probes fitted on calib, scored on test
#   permutation  matched-confidence gaps and within-bin permutation tests
#   bandwidth    Nadaraya-Watson bandwidth sensitivity (Scott multiples, CV-NLL, oracle)
#   planted      the planted control: does the suite detect a signal we put in?
#   aggregate    tidy summaries across cells and seeds
#   tables, figures, paper   LaTeX tables, figures and the PDF


import re

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    substrate=r"[A-Za-z0-9_-]+",
    variant=r"baseline|block|full",
    seed=r"\d+",
    split=r"calib|test",
    name=r"[A-Za-z0-9_-]+",


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/dump.smk"
include: "workflow/rules/temporal.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/permutation.smk"
include: "workflow/rules/bandwidth.smk"
include: "workflow/rules/planted.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/paper.smk"


# Summaries, tables, figures and the PDF are seconds of work on small files (and LaTeX is
# rarely installed on compute nodes): on a cluster they run where Snakemake runs.
localrules:
    all,
    summarise,
    planted_summary,
    temporal_summary,
    table,
    figure,
    paper,


rule all:
    default_target: True
    input:
        "paper/build/main.pdf",
