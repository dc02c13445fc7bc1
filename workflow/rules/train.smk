# Stage 2: train one Attention-Residual model per cell (a GPU job on a cluster).
# The run folder keeps checkpoint.pt, so a restarted job resumes where it stopped.


rule train:
    input:
        splits="results/data/{dataset}/splits.npz",
    output:
        model=f"results/train/{CELL}/model.pt",
        history=f"results/train/{CELL}/history.csv",
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
