# The temporal pilot: snapshots every `temporal.snapshot_stride` epochs during training; the
# last `temporal.ensemble_k` of them (those model.pt lists, with its weights key) are averaged
# into one model whose calibration and routing tests are compared with the final model's.
#
# A pilot cell is dumped by one job that writes the final model's dump (what `dump` writes for
# every other cell) and the ensemble's: the model and the images are loaded once, and the last
# snapshot, which is the final model, is evaluated once. Its logs and benchmarks sit with the
# other dumps'. The price: changing `temporal.ensemble_k` reruns the cell's whole dump, and the
# analyses downstream of it.


ruleorder: dump_with_ensemble > dump


# `dump`'s job (script, environment, threads, resources) for one pilot cell, named by its id.
use rule dump as dump_with_ensemble with:
    input:
        model="results/train/{cell}/model.pt",
        snapshots="results/train/{cell}/snapshots",
        splits=lambda w: f"results/data/{pilot_cell(w).dataset}/splits.npz",
        manifest=lambda w: f"results/data/{pilot_cell(w).dataset}/manifest.json",
    output:
        calib="results/dumps/{cell}/calib.npz",
        test="results/dumps/{cell}/test.npz",
        profile="results/dumps/{cell}/routing_profile.npz",
        calib_ensemble="results/dumps/{cell}/calib_ensemble.npz",
        test_ensemble="results/dumps/{cell}/test_ensemble.npz",
    log:
        "results/logs/dump/{cell}.log",
    benchmark:
        "results/benchmarks/dump/{cell}.tsv"
    wildcard_constraints:
        cell=one_of(c.id for c in TEMPORAL),
    params:
        settings=lambda w: grid.train_settings(config, pilot_cell(w)),
        ensemble_k=config["temporal"]["ensemble_k"],


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
