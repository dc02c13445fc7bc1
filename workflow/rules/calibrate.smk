# Stage 4: probe-free metrics of every model, and calibration probes fitted on the
# calibration split and scored on the test split (AttnRes cells only).
# {ens} is "" for the final model and ".ensemble" for the temporal pilot's snapshot ensemble.


rule metrics:
    input:
        test=test_dump,
    output:
        f"results/metrics/{CELL}{{ens}}.csv",
    log:
        f"results/logs/metrics/{CELL}{{ens}}.log",
    wildcard_constraints:
        ens=r"|\.ensemble",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        n_bins=config["calibration"]["n_bins"],
    script:
        "../scripts/metrics.py"


rule probes:
    input:
        calib=f"results/dumps/{CELL}/calib.npz",
        test=f"results/dumps/{CELL}/test.npz",
    output:
        f"results/probes/{CELL}.csv",
    log:
        f"results/logs/probes/{CELL}.log",
    benchmark:
        f"results/benchmarks/probes/{CELL}.tsv"
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
        "../scripts/probes.py"
