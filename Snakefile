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
#   audit        the suite on traces arcal did not train (config audits:) and on the
#                baselines' attention entropy
#   aggregate    tidy summaries across cells and seeds
#   tables, figures, paper   LaTeX tables, figures and the PDF


import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from arcal import checks

# Profiles are named config.yaml, which every Snakemake 9 finds (profile.yaml only 9.19+), so
# this check is what an older Snakemake reports. Tested: 9.0.1 and the pinned 9.27.1.
min_version("9.0.1")


configfile: "config.yaml"


# The grid: config.yaml is the paper grid; `grid: <name>` (set by profiles/<name>) merges
# profiles/<name>/grid.yaml over it, and files given with --configfile go over both.
if workflow.is_main_process:
    checks.check_grid_choice(workflow.config_settings.config)
if config.get("grid", "paper") != "paper":

    configfile: checks.grid_file(config["grid"])


try:
    validate(config, "workflow/schemas/config.schema.yaml")
except WorkflowError as error:
    raise checks.explain_schema_error(error) from None
if workflow.is_main_process:  # jobs on cluster nodes run with the checked config
    checks.check_config(config)
# The conda environments' post-deploy scripts install the package from here (envs/).
os.environ.update(ARCAL_SOURCE=workflow.basedir)


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
include: "workflow/rules/audit.smk"
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
    attention_summary,
    table,
    figure,
    paper,


rule all:
    default_target: True
    input:
        "paper/build/main.pdf",
        expand("results/audits/{name}/report.html", name=AUDITS),


# Before the first job: what the jobs about to run need (models that build, data, LaTeX, CUDA,
# the permutation tests' C kernel).
onstart:
    for warning in checks.check_environment(
        config,
        workflow.dag.needrun_jobs(),
        workflow.local_exec,
        conda=any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method),
    ):
        logger.warning(f"arcal: {warning}")


onsuccess:
    if Path("paper/build/main.pdf").exists():
        logger.info(f"arcal: the paper is {Path('paper/build/main.pdf').resolve()}")
