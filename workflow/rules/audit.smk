# Audits: the diagnostic suite on traces arcal did not train, and on the baselines' attention.
#   audit      config `audits:` (name -> an audit-format file or a calib/test pair): the whole
#              suite and a report, results/audits/<name>/ (python -m arcal.audit does the same)
#   attention  every baseline cell: permutation tests and probes of its attention entropy, the
#              paper's attention table (a standard ViT/Swin's trace, audited like a routing one)

AUDITS = config.get("audits") or {}
AUDIT_FILES = ("input", "calib", "test")
BASELINES = [c for c in CELLS if not c.routed]


rule audit:
    input:
        unpack(lambda w: {k: v for k, v in AUDITS[w.name].items() if k in AUDIT_FILES}),
    output:
        report="results/audits/{name}/report.html",
        inputs="results/audits/{name}/inputs.json",
        metrics="results/audits/{name}/metrics.csv",
        permutation="results/audits/{name}/permutation.csv",
        null="results/audits/{name}/permutation.null.npz",
        probes="results/audits/{name}/probes.csv",
        bandwidth="results/audits/{name}/bandwidth.csv",
        planted="results/audits/{name}/planted.csv",
    log:
        "results/logs/audit/{name}.log",
    benchmark:
        "results/benchmarks/audit/{name}.tsv"
    wildcard_constraints:
        name=one_of(AUDITS),
    conda:
        "../../envs/audit.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        spec=lambda wildcards: AUDITS[wildcards.name],
        calibration=config["calibration"],
        planted=config["planted"],
    script:
        "../scripts/audit.py"


rule attention:
    input:
        calib=f"results/dumps/{CELL}/calib.npz",
        test=f"results/dumps/{CELL}/test.npz",
    output:
        permutation=f"results/attention/{CELL}/permutation.csv",
        null=f"results/attention/{CELL}/permutation.null.npz",
        probes=f"results/attention/{CELL}/probes.csv",
        inputs=f"results/attention/{CELL}/inputs.json",
    log:
        f"results/logs/attention/{CELL}.log",
    benchmark:
        f"results/benchmarks/attention/{CELL}.tsv"
    wildcard_constraints:
        variant="baseline",
    conda:
        "../../envs/audit.yaml"
    resources:
        mem_mb=resource("analysis", "mem_mb"),
        runtime=resource("analysis", "runtime"),
    params:
        calibration=config["calibration"],
        planted=config["planted"],
    script:
        "../scripts/attention.py"


rule attention_summary:
    input:
        permutation=per_cell(f"results/attention/{CELL}/permutation.csv", BASELINES),
        probes=per_cell(f"results/attention/{CELL}/probes.csv", BASELINES),
    output:
        permutation="results/summary/attention_permutation.csv",
        probes="results/summary/attention_probes.csv",
    log:
        "results/logs/summary/attention.log",
    localrule: True
    conda:
        "../../envs/audit.yaml"
    params:
        cells=[c.id for c in BASELINES],
    script:
        "../scripts/attention_summary.py"
