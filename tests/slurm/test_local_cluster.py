"""The `slurm` profile on a real Slurm: the one-node cluster of profiles/slurm/local-cluster.sh.

One run of the test grid's block/seed0 cell through profiles/slurm-local (splits, training,
dump, metrics, probes, permutation test, bandwidth sweep) on a node that advertises a fake GPU,
with training asking for one (`--set-resources train:gpu=1`). While training runs, the test
kills it through Slurm once a checkpoint exists (`scancel --signal=TERM`: the job's processes
die and the job ends FAILED, as after an OOM kill); the profile's retry must resume from it.
(A plain `scancel` would leave the job `CANCELLED by <uid>` in sacct, a state that
snakemake-executor-plugin-slurm 2.8.0 does not recognise: Snakemake would wait forever.)
Needs root and Debian packages (the script installs them with apt-get when missing).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CELL = "fashion-mnist/vit_test/block/seed0"
TARGETS = [f"results/{stage}/{CELL}.csv" for stage in ("metrics", "probes", "permutation", "bandwidth")]
EPOCHS = 6  # enough epochs that the test can kill training between two checkpoints
WORKFLOW_TIMEOUT_S = 900  # the run is killed (SIGKILL, as `timeout -s KILL`) after this

pytestmark = pytest.mark.slow


def slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def cluster(local_cluster):
    """A running one-node cluster with one fake GPU, stopped afterwards unless it was up before."""
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (it installs packages and starts daemons)")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("neither Slurm nor apt-get (to install it from Debian) is available")
    was_up = local_cluster("status").returncode == 0
    started = local_cluster("start", "--fake-gpus", "1")
    assert started.returncode == 0, started.stderr[-3000:]
    yield started.stdout.strip()
    if not was_up:
        stopped = local_cluster("stop")
        assert stopped.returncode == 0, stopped.stderr[-3000:]


def cancel_jobs_of(workdir: Path) -> None:
    """scancel every queued or running job whose working directory is `workdir`."""
    for line in slurm("squeue", "-h", "-o", "%i|%Z").splitlines():
        job, jobdir = line.split("|", 1)
        if Path(jobdir) == workdir:
            subprocess.run(["scancel", job], check=False)


def running_train_job(workdir: Path) -> str | None:
    for line in slurm("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z").splitlines():
        job, comment, jobdir = line.split("|", 2)
        if Path(jobdir) == workdir and comment.startswith("rule_train"):
            return job
    return None


def kill_training_after_first_checkpoint(repo: Path, proc: subprocess.Popen, log: Path) -> str:
    """Wait for training to write its first checkpoint, then kill its Slurm job's processes."""
    checkpoint = repo / "results/train" / CELL / "checkpoint.pt"
    deadline = time.monotonic() + WORKFLOW_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and (job := running_train_job(repo)):
            subprocess.run(["scancel", "--signal=TERM", job], check=True)
            return job
        time.sleep(0.2)
    pytest.fail(f"training never wrote a checkpoint while its Slurm job ran:\n{log.read_text()[-4000:]}")


@dataclass
class SlurmRun:
    repo: Path
    returncode: int
    output: str
    killed: str  # the Slurm job id of the training job killed mid-run
    submitted: dict[str, Path]  # Slurm job id -> its Slurm log

    def sacct(self) -> pd.DataFrame:
        fields = "JobID,State,Account,Partition,Comment,AllocTRES,ReqTRES,Timelimit"
        text = slurm(
            "sacct", "-X", "-n", "-P", "-j", ",".join(self.submitted), f"--format={fields}"
        )
        rows = [line.split("|") for line in text.splitlines()]
        return pd.DataFrame(rows, columns=fields.split(",")).set_index("JobID")


@pytest.fixture(scope="module")
def run(cluster, tmp_path_factory, checkout):
    repo = checkout(tmp_path_factory.mktemp("slurm")).resolve()
    (repo / "epochs.yaml").write_text(yaml.safe_dump({"train": {"epochs": EPOCHS}}))
    log = repo / "snakemake.log"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command = [
        str(BIN / "snakemake"), *TARGETS, "--profile", "profiles/slurm-local",
        "--configfile", "epochs.yaml",  # merged over the profile's test grid
        "--set-resources", "train:gpu=1",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            killed = kill_training_after_first_checkpoint(repo, proc, log)
            returncode = proc.wait(timeout=WORKFLOW_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            cancel_jobs_of(repo)
    output = log.read_text()
    submitted = {
        job: Path(path)
        for job, path in re.findall(r"submitted with SLURM jobid (\d+) \(log: (.*)\)\.", output)
    }
    return SlurmRun(repo, returncode, output, killed, submitted)


def test_workflow_completes_through_slurm(run):
    assert run.returncode == 0, run.output[-6000:]
    for target in TARGETS:
        assert (run.repo / target).stat().st_size > 0, target


def test_every_job_ran_as_a_slurm_job(run, cluster):
    jobs = run.sacct()
    assert set(jobs.index) == set(run.submitted), run.output[-3000:]
    # one Slurm job per Snakemake job, plus the retry of the killed training job
    done = jobs[jobs.State == "COMPLETED"]
    stats = re.search(r"^total\s+(\d+)$", run.output, re.M)
    assert stats and len(done) == int(stats.group(1)), run.output[-3000:]
    assert set(jobs.State) == {"COMPLETED", "FAILED"}
    assert set(jobs.Account) == {"arcal"} and set(jobs.Partition) == {cluster}
    rules = {comment.split("_wildcards")[0] for comment in done.Comment}
    # CELL is a temporal-pilot cell of the test grid, so its dump job is dump_with_ensemble
    assert rules == {f"rule_{r}" for r in ("splits", "train", "dump_with_ensemble", "metrics",
                                           "probes", "permutation", "bandwidth")}


def test_training_gets_the_gpu_and_resources_it_declares(run):
    jobs = run.sacct()
    train = jobs[jobs.Comment.str.startswith("rule_train")]
    others = jobs[~jobs.Comment.str.startswith("rule_train")]
    assert len(train) == 2
    assert all("gres/gpu=1" in tres for tres in train.AllocTRES)
    assert not any("gres/gpu" in tres for tres in others.AllocTRES)
    # profiles/test/grid.yaml: resources.train = 1 CPU, 2000 MB, 10 minutes
    for tres in train.ReqTRES:
        assert "cpu=1" in tres.split(",") and "mem=2000M" in tres.split(","), tres
    assert set(train.Timelimit) == {"00:10:00"}


def test_killed_training_is_retried_and_resumes_from_its_checkpoint(run):
    jobs = run.sacct()
    assert jobs.loc[run.killed, "State"] == "FAILED"
    assert f"SLURM-job '{run.killed}' failed" in run.output
    train = jobs[jobs.Comment.str.startswith("rule_train")]
    (retry,) = train.index[train.State == "COMPLETED"]
    assert int(retry) > int(run.killed)

    first, second = run.submitted[run.killed].read_text(), run.submitted[retry].read_text()
    assert "resuming" not in first
    resumed = re.search(r"resuming (\S+) from epoch (\d+) of (\d+)", second)
    assert resumed, second[-3000:]
    assert run.repo / resumed.group(1) == run.repo / "results/train" / CELL  # relative to the workdir
    assert 1 <= int(resumed.group(2)) < int(resumed.group(3)) == EPOCHS
    # the rule log belongs to the attempt that finished
    assert resumed.group(0) in (run.repo / "results/logs/train" / f"{CELL}.log").read_text()
    history = pd.read_csv(run.repo / "results/train" / CELL / "history.csv")
    assert history.epoch.tolist() == list(range(1, EPOCHS + 1))
