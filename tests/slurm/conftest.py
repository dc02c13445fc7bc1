"""The one-node Slurm script as the Slurm tests call it."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "profiles/slurm/local-cluster.sh"


@pytest.fixture(scope="session")
def local_cluster():
    """Run `sh local-cluster.sh ARGS` (with extra environment variables); output captured."""

    def run(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **env},
        )

    return run
