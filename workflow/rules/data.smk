# Stage 1: deterministic train / calibration / test splits per dataset.


rule splits:
    output:
        splits="results/data/{dataset}/splits.npz",
        manifest="results/data/{dataset}/manifest.json",
    log:
        "results/logs/data/{dataset}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        settings=split_settings,
    script:
        "../scripts/splits.py"
