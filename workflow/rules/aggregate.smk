# Stage 7: tidy summaries across cells and seeds, one file per kind of result; each reads
# only the per-cell files it needs, so one figure does not wait for unrelated analyses.


rule summarise:
    input:
        summary_inputs,
    output:
        "results/summary/{summary}",
    log:
        "results/logs/summary/{summary}.log",
    wildcard_constraints:
        summary=one_of(summaries.SUMMARY_FILES),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        cells=CELL_IDS,
        alpha=config["calibration"]["alpha"],
        n_bins=config["calibration"]["n_bins"],
    script:
        "../scripts/summarise.py"
