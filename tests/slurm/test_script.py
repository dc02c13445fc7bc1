"""profiles/slurm/local-cluster.sh without a cluster: lint, and bad settings refused up front."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "script",
    ["profiles/slurm/local-cluster.sh", "setup.sh", ".ci/run", "bench/demo_time.sh",
     *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("envs/*.post-deploy.sh")))],
)
def test_shell_scripts_pass_shellcheck(script):
    shell = ["-s", "sh"] if script.endswith("local-cluster.sh") else []
    result = subprocess.run(
        [str(BIN / "shellcheck"), *shell, script], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_demo_time_refuses_unknown_options_before_cloning():
    result = subprocess.run(["bash", "bench/demo_time.sh", "--fast"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr and not result.stdout


def test_unknown_action_or_option_prints_usage(local_cluster):
    for args in (["restart"], ["start", "--gpus", "1"]):
        result = local_cluster(*args, timeout=60)
        assert result.returncode == 2 and "usage:" in result.stderr and not result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="start refuses non-root users before it checks values")
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--fake-gpus", "two"], "--fake-gpus must be a whole number, got 'two'"),
        (["--partition", "gpu nodes"], "bad partition name 'gpu nodes'"),
        (["--account", "Lab"], "bad account name 'Lab'"),
    ],
)
def test_bad_setting_is_named_before_anything_is_installed(args, named, tmp_path, local_cluster):
    state = tmp_path / "state"
    result = local_cluster("start", *args, timeout=60, ARCAL_SLURM_STATE=str(state))
    assert result.returncode == 1 and named in result.stderr
    assert not state.exists() and not result.stdout


def test_start_as_a_normal_user_is_refused():
    command = ["sh", "profiles/slurm/local-cluster.sh", "start"]
    if os.geteuid() == 0:  # drop to nobody
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "start must run as root" in result.stderr
