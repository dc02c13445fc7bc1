#!/usr/bin/env bash
# Sets up arcal on a fresh machine: Debian packages (Fashion-MNIST, LaTeX) where it can,
# and a virtual environment at .venv with the pinned dependencies of pyproject.toml.
#   ./setup.sh          runtime dependencies (the demo)
#   ./setup.sh test     plus the test-only oracles and tools
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

extra=""
[[ "${1:-}" == "test" ]] && extra="[test]"

apt_packages=(dataset-fashion-mnist latexmk texlive-latex-base texlive-latex-recommended
  texlive-fonts-recommended)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "setup: cannot install Debian packages here (needs root and apt-get)." >&2
    echo "       Install: ${missing[*]}" >&2
    echo "       (Fashion-MNIST elsewhere: point datasets.fashion-mnist.root at a folder with" >&2
    echo "        the four *-ubyte.gz files; LaTeX: any TeX Live with latexmk and booktabs)" >&2
  fi
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $($python --version)" >&2
  "$python" -m venv .venv
fi
stamp=".venv/.arcal-installed${extra:+-test}"
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing pinned dependencies into .venv (torch brings ~6 GB of CUDA libraries)" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra}" >&2
  touch "$stamp"
fi
