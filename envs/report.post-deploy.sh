#!/usr/bin/env bash
# Snakemake runs this in the new environment: it installs arcal itself, editable from the
# repository that runs the workflow (ARCAL_SOURCE, set by the Snakefile), so the rules run its
# code. A pip path in the environment file would be resolved inside .snakemake/conda/.
set -euo pipefail
python -m pip install --no-deps --editable "${ARCAL_SOURCE:?set by the Snakefile to the repository root}"
