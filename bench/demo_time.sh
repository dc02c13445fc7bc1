#!/usr/bin/env bash
# Times the demo (`make demo` without its setup step) from an empty results/ to
# paper/build/main.pdf, in a scratch clone of this repository's HEAD, so nothing the working tree
# has already built is reused. Needs ./setup.sh to have been run here (the clone uses this
# checkout's .venv).
#   bench/demo_time.sh [--keep]      --keep leaves the scratch clone (its path is printed)
# Prints, last: demo_seconds=<s> min_accuracy=<a> (the lowest test accuracy of the 18 models);
# before it, on stderr, the CPU and whether it has AVX-512, and a host yardstick: the demo's median
# epoch seconds per (substrate, variant) pair, summed, to compare runs made on days the host ran at
# other speeds.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=0
case "${1:-}" in
  --keep) keep=1 ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac
if [[ ! -x $repo/.venv/bin/snakemake ]]; then
  echo "demo_time: $repo/.venv is not set up; run ./setup.sh first" >&2
  exit 2
fi
# The Slurm executor plugin asks `scontrol show config` when Snakemake starts; with the Slurm client
# installed and no controller (as the Slurm tests leave this machine), that waits about 9 s, which
# a laptop without Slurm does not pay (README, "Trying it locally"). Say so rather than hide it.
if command -v sinfo > /dev/null; then
  t0=$(date +%s.%N)
  if ! timeout 12 scontrol show config > /dev/null 2>&1; then
    wait_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "demo_time: warning: the Slurm client is installed but no controller answers; Snakemake" \
      "waits ${wait_s} s for it at start, and demo_seconds includes that wait" >&2
  fi
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/arcal-demo.XXXXXX")
cleanup() { if ((keep)); then echo "demo_time: scratch clone kept at $scratch" >&2; else rm -rf "$scratch"; fi; }
trap cleanup EXIT
git clone --quiet "$repo" "$scratch/arcal"
ln -s "$repo/.venv" "$scratch/arcal/.venv"
cd "$scratch/arcal"
# The venv's editable install points at this checkout's workflow/; the clone's code goes first.
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}"
# Training runs about twice as fast with AVX-512 as without (README, "Running"), so the CPU goes with
# the time.
cpu="" avx512=unknown
if [[ -r /proc/cpuinfo ]]; then
  # x86 names the CPU on a `model name` line; other architectures (aarch64) may have none.
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  if grep -qw avx512f /proc/cpuinfo; then avx512=yes; else avx512=no; fi
fi
echo "demo_time: $(git log -1 --format=%h) on $(nproc) cores of" \
  "${cpu:-an unknown CPU} (AVX-512: ${avx512})" >&2
start=$(date +%s.%N)
.venv/bin/snakemake --profile profiles/demo --quiet rules > "$scratch/snakemake.log" 2>&1 || {
  tail -40 "$scratch/snakemake.log" >&2
  echo "demo_time: the demo failed (log: $scratch/snakemake.log)" >&2
  keep=1
  exit 1
}
end=$(date +%s.%N)
test -s paper/build/main.pdf
.venv/bin/python - "$start" "$end" <<'EOF'
import sys

import pandas as pd

metrics = pd.read_csv("results/summary/metrics.csv")
accuracy = metrics.loc[metrics["metric"] == "accuracy", "value"]
print(f"demo_time: {accuracy.size} models", file=sys.stderr)
# The host's speed drifts by tens of percent between days; the demo's own epochs measure it, so
# runs on different days can be compared by this yardstick rather than by seconds alone.
history = pd.read_csv("results/summary/history.csv")
epoch_s = history.groupby(["substrate", "variant"])["seconds"].median().sum()
print(f"demo_time: host yardstick: {epoch_s:.1f} s, the median epoch time of each (substrate, "
      "variant) pair, summed", file=sys.stderr)
print(f"demo_seconds={float(sys.argv[2]) - float(sys.argv[1]):.0f} min_accuracy={accuracy.min():.3f}")
EOF
