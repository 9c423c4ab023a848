"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd started here, stopped by pid at the end.

The node is this host with 2 CPUs; process tracking by /proc and no task plugin, so no cgroups are needed. Every
daemon gets its own state folder, ports and MUNGE socket, so a SLURM installation already on the machine is untouched.
Install the packages with `.ci/install_slurm.sh` (root).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SLURM_PROGRAMS = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo"]
FINISHED_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"
}  # fmt: skip


def _unavailable(reason: str) -> None:
    """CI must run these tests; a developer machine without SLURM skips them with the reason."""
    message = f"SLURM tests need a local SLURM + MUNGE install and root: {reason}. Run .ci/install_slurm.sh as root."
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {path}:\n{path.read_text(errors='replace')[-3000:]}" for path in logs if path.exists())


def _wait_until(condition, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{_log_tails(logs)}")
        time.sleep(0.2)


SLURM_CONF = """\
ClusterName=dcclip-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmJob:
    """One `scontrol show job` snapshot."""

    job_id: int
    state: str
    exit_code: str
    restarts: int
    time_limit: str


@dataclass
class SlurmCluster:
    """Handle on the running test cluster: submit, inspect, signal and cancel jobs through the real client tools."""

    env: dict[str, str]
    submitted: list[int] = field(default_factory=list)

    def run(self, *command: str) -> str:
        """Runs a SLURM client command against this cluster; its stdout."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def sbatch(
        self, script: str | Path, *args: str, cwd: Path, options: tuple[str, ...] = (), env: dict | None = None
    ) -> int:
        """`sbatch [options] script args...` from `cwd` with extra environment `env`; returns the job id."""
        command = ["sbatch", "--parsable", *options, str(script), *args]
        environment = {**self.env, **(env or {})}
        result = subprocess.run(command, env=environment, cwd=cwd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
        job_id = int(result.stdout.strip().split(";")[0])
        self.submitted.append(job_id)
        return job_id

    def job(self, job_id: int) -> SlurmJob:
        """The job's current record."""
        text = self.run("scontrol", "show", "job", "-o", str(job_id))
        fields = dict(re.findall(r"(\w+)=(\S*)", text))
        return SlurmJob(job_id, fields["JobState"], fields["ExitCode"], int(fields["Restarts"]), fields["TimeLimit"])

    def wait_for_state(self, job_id: int, states: set[str], timeout: float, log: Path | None = None) -> SlurmJob:
        """Polls `scontrol show job` (sbatch --wait polls slowly) until the job reaches one of `states`."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in states:
                return job
            if job.state in FINISHED_STATES or time.monotonic() > deadline:
                job_log = log.read_text(errors="replace")[-6000:] if log and log.exists() else "(no log)"
                raise AssertionError(f"job {job_id} is {job.state} (exit {job.exit_code}), not {states}\n{job_log}")
            time.sleep(0.3)

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancels every job submitted here and waits until none is left running (their processes are gone)."""
        for job_id in self.submitted:
            subprocess.run(["scancel", str(job_id)], env=self.env, capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self.job(j).state not in FINISHED_STATES for j in self.submitted):
            time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Starts munged (as the `munge` user), slurmctld and slurmd in the foreground of processes tracked by pid;
    yields a `SlurmCluster`; cancels the jobs it ran and stops the three daemons by pid."""
    missing = [name for name in SLURM_PROGRAMS if shutil.which(name) is None]
    if missing:
        _unavailable(f"not found on PATH: {', '.join(missing)}")
    if os.geteuid() != 0:
        _unavailable("not running as root (munged must be started as the munge user)")

    node = socket.gethostname().split(".")[0]
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("ctld", "spool"):
        (state / sub).mkdir()
    # munged refuses sockets in folders that the munge user cannot traverse (pytest's tmp root is private to root),
    # so its folder sits directly in the system temp folder, owned by munge.
    munge_dir = Path(tempfile.mkdtemp(prefix="dcclip-test-munge-"))
    munge_dir.chmod(0o755)
    shutil.chown(munge_dir, "munge", "munge")
    munge_socket = munge_dir / "munge.socket"
    conf = state / "slurm.conf"
    ports = {"ctld_port": _free_port(), "slurmd_port": _free_port()}
    conf.write_text(SLURM_CONF.format(node=node, munge_socket=munge_socket, state=state, **ports))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    env["SLURM_CONF"] = str(conf)

    daemons: list[subprocess.Popen] = []
    cluster = SlurmCluster(env=env)
    logs = [state / name for name in ("munged.out", "slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log")]

    def start(command: list[str], log: Path, **kwargs) -> None:
        with open(log, "wb") as out:
            daemons.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, **kwargs))

    try:
        munge_key = munge_dir / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={munge_key}"], check=True, capture_output=True)
        shutil.chown(munge_key, "munge", "munge")
        start(
            ["munged", "--foreground", f"--socket={munge_socket}", f"--key-file={munge_key}",
             f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}"],
            logs[0], user="munge", group="munge",
        )
        _wait_until(munge_socket.exists, 20, "munged's socket", logs)
        start(["slurmctld", "-D", "-i"], logs[1])
        start(["slurmd", "-D", "-N", node], logs[2])

        def node_idle() -> bool:
            if any(d.poll() is not None for d in daemons):
                raise RuntimeError(f"a SLURM daemon exited at start-up:\n{_log_tails(logs)}")
            return cluster.run("sinfo", "-h", "-N", "-o", "%T").strip() == "idle"

        _wait_until(node_idle, 60, f"node {node} to be idle", logs)
        yield cluster
    finally:
        cluster.cancel_all()
        for daemon in reversed(daemons):
            _stop(daemon)
        shutil.rmtree(munge_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def job_environment(tmp_path_factory) -> dict[str, str]:
    """Environment for submitted jobs: the repository, this Python through the DCCLIP_ENV_SETUP hook (as a site would
    load its modules or conda), offline, one thread per process."""
    hook = tmp_path_factory.mktemp("env") / "env_setup.sh"
    hook.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return {
        "DCCLIP_ROOT": str(REPO_ROOT),
        "DCCLIP_ENV_SETUP": str(hook),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _assert_same_weights(folder_a: Path, folder_b: Path) -> None:
    import torch
    from safetensors.torch import load_file

    weights_a, weights_b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], msg=lambda m: f"{name}: {m}")


@pytest.fixture
def assert_same_weights():
    """`assert_same_weights(folder_a, folder_b)`: both `model.safetensors` hold the same tensors (float tolerance)."""
    return _assert_same_weights
