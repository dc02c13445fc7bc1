# Stage 5: matched-confidence gaps and the within-bin permutation test, one test per
# (cell, feature), on the test split.


rule permutation:
    input:
        test=test_dump,
    output:
        table=f"results/permutation/{CELL}{{ens}}.csv",
        null=f"results/permutation/{CELL}{{ens}}.null.npz",
    log:
        f"results/logs/permutation/{CELL}{{ens}}.log",
    wildcard_constraints:
        variant=r"block|full",
        ens=r"|\.ensemble",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        settings=config["calibration"],
    script:
        "../scripts/permutation.py"
