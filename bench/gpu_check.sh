#!/usr/bin/env bash
# Every GPU-only check of arcal in one run of at most 8 minutes on one GPU; writes
# bench/results/gpu-<device>.json. What it measures and checks: bench/gpu_check.py.
#
#   bench/gpu_check.sh              # on a GPU machine (no network, no installs, no setup.sh)
#   bench/gpu_check.sh --dry-run    # the same code on the CPU, tiny sizes, well under a minute
#   bench/gpu_check.sh --help       # options (--out, --data, --budget-s)
#
# Needs only a Python with torch, timm, numpy, scipy and pandas (PYTHON, default python3); it runs
# the repository's code in place (PYTHONPATH=workflow). Real Fashion-MNIST comes from
# bench/data/fashion-mnist/ (git-ignored, about 30 MB):
#   mkdir -p bench/data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz bench/data/fashion-mnist/
# GPU_CHECK_TIMEOUT (seconds, default 480) bounds the whole run; the JSON is rewritten after every
# phase, so a run cut short keeps what it measured.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export PYTHONPATH="$root/workflow${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
