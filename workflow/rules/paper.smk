# The paper: main.tex with every table and figure, built by latexmk. SOURCE_DATE_EPOCH and
# FORCE_SOURCE_DATE pin the dates pdflatex writes, so the PDF depends only on its inputs.


rule paper:
    input:
        tex="paper/main.tex",
        tables=expand("paper/tables/{name}.tex", name=TABLES),
        figures=expand("paper/figures/{name}.pdf", name=FIGURES),
    output:
        "paper/build/main.pdf",
    log:
        "results/logs/paper.log",
    localrule: True
    conda:
        "../../envs/latex.yaml"
    shell:
        "cd paper && SOURCE_DATE_EPOCH=0 FORCE_SOURCE_DATE=1 latexmk -pdf -interaction=nonstopmode"
        " -halt-on-error -outdir=build main.tex > ../{log} 2>&1"
