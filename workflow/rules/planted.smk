# The planted control (ours): synthetic correctness with a routing-conditional effect of
# size delta, drawn from each cell's real confidences and routing features, run through
# the same permutation test and probes. Its size at delta = 0 and its power curve.


rule planted:
    input:
        calib=f"results/dumps/{CELL}/calib.npz",
        test=f"results/dumps/{CELL}/test.npz",
    output:
        f"results/planted/{CELL}.csv",
    log:
        f"results/logs/planted/{CELL}.log",
    benchmark:
        f"results/benchmarks/planted/{CELL}.tsv"
    wildcard_constraints:
        variant=r"block|full",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        settings=config["planted"],
        calibration=config["calibration"],
    script:
        "../scripts/planted.py"


rule planted_summary:
    input:
        per_cell(f"results/planted/{CELL}.csv", ROUTED),
    output:
        "results/summary/planted.csv",
    log:
        "results/logs/summary/planted.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cells=[c.id for c in ROUTED],
    script:
        "../scripts/planted_summary.py"
