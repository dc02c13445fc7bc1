# Figures from the summaries (matplotlib, one shared style, deterministic PDFs).


rule figure:
    input:
        unpack(figure_inputs),
    output:
        report("paper/figures/{name}.pdf", category="Figures", caption="../report/figure.rst"),
    log:
        "results/logs/figures/{name}.log",
    wildcard_constraints:
        name="|".join(FIGURES),
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/figure.py"
