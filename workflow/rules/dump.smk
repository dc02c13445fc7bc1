# Stage 3: logits and routing traces of the calibration and test splits (the temporal pilot's
# cells: dump_with_ensemble, temporal.smk).


rule dump:
    input:
        model=f"results/train/{CELL}/model.pt",
        splits="results/data/{dataset}/splits.npz",
        manifest="results/data/{dataset}/manifest.json",
    output:
        calib=f"results/dumps/{CELL}/calib.npz",
        test=f"results/dumps/{CELL}/test.npz",
        profile=f"results/dumps/{CELL}/routing_profile.npz",
    log:
        f"results/logs/dump/{CELL}.log",
    benchmark:
        f"results/benchmarks/dump/{CELL}.tsv"
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
        ensemble_k=0,
    script:
        "../scripts/dump.py"
