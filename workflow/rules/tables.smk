# LaTeX tables from the summaries (jinja2 templates in paper/templates, booktabs).


rule table:
    input:
        unpack(table_inputs),
    output:
        "paper/tables/{name}.tex",
    log:
        "results/logs/tables/{name}.log",
    wildcard_constraints:
        name="|".join(TABLES),
    localrule: True
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/table.py"
