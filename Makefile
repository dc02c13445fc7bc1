# The two entry points of the README. Both set everything up first (./setup.sh).
.PHONY: demo test

demo:
	./setup.sh
	.venv/bin/snakemake --profile profiles/demo

test:
	./setup.sh test
	.venv/bin/python -m pytest
