# Stage 2: train one Attention-Residual model per cell (a GPU job on a cluster).
# While it runs, the run folder keeps checkpoint.pt, so a failed job resumes where it stopped
# when retried; a finished run deletes it, so a forced rerun retrains (arcal.train).
# snapshots/ holds the temporal pilot's snapshots of this run (empty for other cells).


rule train:
    input:
        splits="results/data/{dataset}/splits.npz",
        manifest="results/data/{dataset}/manifest.json",
    output:
        model=f"results/train/{CELL}/model.pt",
        history=f"results/train/{CELL}/history.csv",
        snapshots=directory(f"results/train/{CELL}/snapshots"),
    log:
        f"results/logs/train/{CELL}.log",
    benchmark:
        f"results/benchmarks/train/{CELL}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: resource("train", "cpus_per_task")
    resources:
        gpu=resource("train", "gpu"),
        runtime=resource("train", "runtime"),
        mem_mb=resource("train", "mem_mb"),
        cpus_per_task=resource("train", "cpus_per_task"),
    params:
        settings=train_settings,
    script:
        "../scripts/train.py"
