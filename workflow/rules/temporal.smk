# The temporal pilot: snapshots every `temporal.snapshot_stride` epochs during training; the
# last `temporal.ensemble_k` of them (those model.pt lists, with its weights key) are averaged
# into one model whose calibration and routing tests are compared with the final model's.
rule dump_ensemble:
    input:
        model=f"results/train/{CELL}/model.pt",
        snapshots=f"results/train/{CELL}/snapshots",
        splits="results/data/{dataset}/splits.npz",
        manifest="results/data/{dataset}/manifest.json",
    output:
        calib=f"results/dumps/{CELL}/calib_ensemble.npz",
        test=f"results/dumps/{CELL}/test_ensemble.npz",
    log:
        f"results/logs/dump_ensemble/{CELL}.log",
    benchmark:
        f"results/benchmarks/dump_ensemble/{CELL}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: resource("dump", "cpus_per_task")
    resources:
        gpu=resource("dump", "gpu"),
        runtime=resource("dump", "runtime"),
        mem_mb=resource("dump", "mem_mb"),
        cpus_per_task=resource("dump", "cpus_per_task"),
    params:
        settings=train_settings,
        k=config["temporal"]["ensemble_k"],
    script:
        "../scripts/dump_ensemble.py"


rule temporal_summary:
    input:
        final=per_cell(f"results/metrics/{CELL}.csv", TEMPORAL),
        ensemble=per_cell(f"results/metrics/{CELL}.ensemble.csv", TEMPORAL),
        permutation=per_cell(f"results/permutation/{CELL}.ensemble.csv", TEMPORAL_ROUTED),
    output:
        "results/summary/temporal.csv",
    log:
        "results/logs/summary/temporal.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cells=[c.id for c in TEMPORAL],
        routed=[c.id for c in TEMPORAL_ROUTED],
    script:
        "../scripts/temporal_summary.py"
