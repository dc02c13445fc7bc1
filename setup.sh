#!/usr/bin/env bash
# Sets up arcal on a fresh machine: a virtual environment at .venv, made with the newest
# supported Python it finds (or $PYTHON), with the pinned dependencies of pyproject.toml, and
# Debian packages (Fashion-MNIST, LaTeX) where it can.
#   ./setup.sh          runtime dependencies (the demo)
#   ./setup.sh test     plus the test-only oracles and tools
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

extra=""
[[ "${1:-}" == "test" ]] && extra="[test]"

# The Python versions of pyproject.toml's requires-python, newest first.
versions=(3.13 3.12 3.11)
supported() { # supported PYTHON: whether PYTHON runs and is one of $versions
  "$1" -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" not in sys.argv[1:])' \
    "${versions[@]}" >/dev/null 2>&1
}
if [[ -x .venv/bin/python ]]; then
  if ! supported .venv/bin/python; then
    echo "setup: .venv has $(.venv/bin/python --version 2>&1); arcal needs Python ${versions[*]}." >&2
    echo "       Remove it (rm -rf .venv) and run ./setup.sh again." >&2
    exit 1
  fi
else
  python=""
  for candidate in ${PYTHON:-python3.13 python3.12 python3.11 python3}; do
    if supported "$candidate"; then
      python=$candidate
      break
    fi
  done
  if [[ -z $python ]]; then
    found=""
    for candidate in ${PYTHON:-python3.13 python3.12 python3.11 python3}; do
      version=$("$candidate" --version 2>&1 | head -n 1) || version="does not run"
      command -v "$candidate" >/dev/null || version="not found"
      found+=" $candidate: ${version};"
    done
    echo "setup: arcal needs Python ${versions[*]}; found:${found}" >&2
    echo "       Install one (Debian/Ubuntu: apt-get install python3.12-venv; macOS: brew install python@3.12)" >&2
    echo "       and run again, or point PYTHON at it: PYTHON=/path/to/python3.12 ./setup.sh" >&2
    exit 1
  fi
  echo "setup: creating .venv with $("$python" --version)" >&2
  if ! "$python" -m venv .venv; then
    rm -rf .venv
    echo "setup: $python cannot create a virtual environment; on Debian/Ubuntu install its venv package" >&2
    echo "       (e.g. apt-get install python3.12-venv) and run again." >&2
    exit 1
  fi
fi

apt_packages=(gcc dataset-fashion-mnist latexmk texlive-latex-base texlive-latex-recommended
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

stamp=".venv/.arcal-installed${extra:+-test}"
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing pinned dependencies into .venv (torch brings ~6 GB of CUDA libraries)" >&2
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra}" >&2
  touch "$stamp"
fi
