# Stage 6: bandwidth sensitivity of the Nadaraya-Watson probes: Scott multiples,
# 5-fold CV-NLL, and the global-ECE oracle (labelled as such everywhere).


rule bandwidth:
    input:
        calib=f"results/dumps/{CELL}/calib.npz",
        test=f"results/dumps/{CELL}/test.npz",
    output:
        f"results/bandwidth/{CELL}.csv",
    log:
        f"results/logs/bandwidth/{CELL}.log",
    benchmark:
        f"results/benchmarks/bandwidth/{CELL}.tsv"
    wildcard_constraints:
        variant=r"block|full",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        settings=config["calibration"],
    script:
        "../scripts/bandwidth.py"
