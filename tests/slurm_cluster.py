"""A real one-node SLURM cluster on loopback, for the tests (tests/test_slurm.py) and by hand.

It runs Debian's daemons, each on its own free port, with every file in one temporary folder:

- ``munged`` with a key of its own and its own socket (SLURM's authentication);
- ``mariadbd`` (a throw-away data folder, loopback only) under ``slurmdbd``: submitit learns the state of a
  job that ended without a result (cancelled, node failure) from ``sacct``, which needs accounting, so a
  cluster without slurmdbd would leave those jobs waiting for ever;
- ``slurmctld`` and one ``slurmd``: 2 CPUs, one partition ``debug``, ``proctrack/linuxproc`` and
  ``task/none`` (no cgroups in a container).

Clients find it through ``SLURM_CONF`` (:attr:`SlurmCluster.env`). Everything is stopped and removed by
:meth:`SlurmCluster.stop`. By hand: ``python tests/slurm_cluster.py`` starts one and prints the
``export SLURM_CONF=...`` line; Ctrl-C stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = "slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
INSTALL_HINT = (
    f"SLURM's daemons are not installed. Install Debian's packages: `apt-get update && apt-get install -y "
    f"{PACKAGES}` (CI: .ci/run does this when they are absent)."
)
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
PARTITION = "debug"
CPUS = 2


class ClusterError(RuntimeError):
    pass


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def _bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout: float, logs: list[Path]) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
    raise ClusterError(f"{what} did not come up within {timeout:.0f} s\n{tails}")


class SlurmCluster:
    """munge + mariadb + slurmdbd + slurmctld + slurmd on 127.0.0.1; ``start()``, then ``stop()``."""

    def __init__(self, root: str | Path | None = None, *, slurmd_timeout: int = 30):
        # Not under pytest's tmp_path: munged checks that no one else can write its folders' parents.
        self.root = Path(root or tempfile.mkdtemp(prefix="freezelab-slurm-"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.ports = {
            name: free_port() for name in ("mariadb", "slurmdbd", "slurmctld", "slurmd", "srun_lo", "srun_hi")
        }
        self.slurmd_timeout = slurmd_timeout
        self.munge_socket = self.root / "munge" / "munge.socket.2"
        self.conf = self.root / "etc" / "slurm.conf"
        self.log = self.root / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self.pidfiles: dict[str, Path] = {}

    # ------------------------------------------------------------------------------------------ env

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, a submitit sweeper) needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command (squeue, scontrol, scancel, sacct, sinfo) against this cluster."""
        proc = subprocess.run(args, env=self.client_env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # ------------------------------------------------------------------------------------------ start

    def start(self) -> SlurmCluster:
        missing = missing_binaries()
        if missing:
            raise ClusterError(f"{', '.join(missing)} not found. {INSTALL_HINT}")
        for sub in ("munge", "etc", "log", "db", "state", "spool", "run"):
            (self.root / sub).mkdir(exist_ok=True)
        (self.root / "munge").chmod(0o700)
        try:
            self._start_munge()
            self._start_mariadb()
            self._write_configs()
            self._start_slurmdbd()
            self._start_slurmctld()
            self.start_slurmd()
        except BaseException:
            self.stop()
            raise
        return self

    def _daemon(self, name: str, args: list[str], *, pidfile: Path | None = None) -> subprocess.Popen:
        out = open(self.log / f"{name}.out", "w")
        proc = subprocess.Popen(
            args, env=self.client_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        self.procs[name] = proc
        if pidfile is not None:
            self.pidfiles[name] = pidfile
        return proc

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._daemon(
            "munged",
            [
                _bin("munged"),
                "--foreground",
                "--force",  # as root, in a folder munged did not make for itself
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                f"--log-file={self.log / 'munged.log'}",
            ],
        )
        _wait("munged", self.munge_socket.exists, 20, [self.log / "munged.log", self.log / "munged.out"])

    def _start_mariadb(self) -> None:
        data = self.root / "db"
        proc = subprocess.run(
            [
                _bin("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        self._daemon(
            "mariadbd",
            [
                _bin("mariadbd"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.root / 'run' / 'mysqld.sock'}",
                f"--port={self.ports['mariadb']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",  # a throw-away database on loopback: no accounts to set up
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                f"--pid-file={self.root / 'run' / 'mysqld.pid'}",
                f"--log-error={self.log / 'mariadb.log'}",
            ],
        )
        _wait("mariadbd", lambda: _port_open(self.ports["mariadb"]), 60, [self.log / "mariadb.log"])

    def _write_configs(self) -> None:
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        dbd = self.root / "etc" / "slurmdbd.conf"
        dbd.write_text(
            auth + f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.ports['slurmdbd']}\nSlurmUser=root\n"
            f"LogFile={self.log / 'slurmdbd.log'}\nPidFile={self.root / 'run' / 'slurmdbd.pid'}\n"
            "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={self.ports['mariadb']}\nStorageUser=root\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)  # slurmdbd refuses a config others can read (it may hold the database password)
        self.conf.write_text(
            "ClusterName=freezelab\n"
            f"SlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={self.ports['slurmctld']}\nSlurmdPort={self.ports['slurmd']}\n"
            f"SrunPortRange={self.ports['srun_lo']}-{self.ports['srun_lo'] + 20}\n"
            "SlurmUser=root\nSlurmdUser=root\n" + auth + "CredType=cred/munge\n"
            f"StateSaveLocation={self.root / 'state'}\nSlurmdSpoolDir={self.root / 'spool'}\n"
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={self.root / 'run' / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={self.log / 'slurmctld.log'}\nSlurmdLogFile={self.log / 'slurmd.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            # No cgroups in a container: processes are tracked by parent pid, tasks not bound.
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
            "SchedulerType=sched/builtin\nMpiDefault=none\nLaunchParameters=use_interactive_step\n"
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={self.ports['slurmdbd']}\n"
            # The munge socket of the connection to slurmdbd (AuthInfo covers only the cluster's own messages).
            f"AccountingStoragePass={self.munge_socket}\nMailProg=/bin/true\n"
            "JobAcctGatherType=jobacct_gather/none\nJobRequeue=1\n"
            # Short timings: a dead node is noticed in seconds, a cancelled job's processes get 2 s.
            f"SlurmdTimeout={self.slurmd_timeout}\nKillWait=2\nMinJobAge=300\nInactiveLimit=0\n"
            "ReturnToService=2\nMessageTimeout=10\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory=4000 State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )

    def _start_slurmdbd(self) -> None:
        self._daemon("slurmdbd", [_bin("slurmdbd"), "-D"], pidfile=self.root / "run" / "slurmdbd.pid")
        logs = [self.log / "slurmdbd.log", self.log / "slurmdbd.out"]
        _wait("slurmdbd", lambda: _port_open(self.ports["slurmdbd"]), 60, logs)

    def _start_slurmctld(self) -> None:
        # -i: ignore state left by a previous run of this folder (there is none); -D: stay in the foreground
        self._daemon(
            "slurmctld", [_bin("slurmctld"), "-D", "-i"], pidfile=self.root / "run" / "slurmctld.pid"
        )
        logs = [self.log / "slurmctld.log", self.log / "slurmctld.out"]
        _wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).returncode == 0, 60, logs)

    def start_slurmd(self) -> None:
        """Start (or restart, after :meth:`kill_node`) the node's slurmd and wait until the node takes jobs."""
        self._daemon("slurmd", [_bin("slurmd"), "-D"], pidfile=self.root / "run" / "slurmd.pid")
        logs = [self.log / "slurmd.log", self.log / "slurmd.out", self.log / "slurmctld.log"]

        def idle() -> bool:
            state = self.node_state()
            if "down" in state or "drain" in state:
                self.run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
            return state.startswith(("idle", "mixed", "allocated"))

        _wait("slurmd (node idle)", idle, 60, logs)

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
        return out.stdout.strip().lower()

    # ------------------------------------------------------------------------------------------ faults

    def kill_node(self) -> None:
        """The node dies: its slurmd, slurmstepd and every process of its jobs get SIGKILL at once."""
        slurmd = self.procs.pop("slurmd", None)
        doomed = [slurmd.pid] if slurmd else []
        doomed += [int(p) for p in _pids_of("slurmstepd") if self._ours(p)]
        for job_pid in list(doomed):
            doomed += _descendants(job_pid)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if slurmd:
            slurmd.wait(timeout=10)

    def _ours(self, pid: str) -> bool:
        """Whether a process belongs to this cluster: slurmd passes its environment (our SLURM_CONF) on to the
        slurmstepd it starts. Another cluster on the same machine (a parallel CI run) is left alone."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"SLURM_CONF={self.conf}".encode() in environ

    # ------------------------------------------------------------------------------------------ queries

    def jobs(self) -> list[dict]:
        """Every job the accounting knows of: [{'JobID', 'JobName', 'State', 'ExitCode'}], steps left out."""
        out = self.run("sacct", "-a", "-X", "-n", "-P", "-o", "JobID,JobName,State,ExitCode").stdout
        keys = ("JobID", "JobName", "State", "ExitCode")
        return [dict(zip(keys, line.split("|"), strict=False)) for line in out.splitlines() if line]

    def requeues(self, job_id: str) -> int:
        """How many times a job was requeued (scontrol's Restarts count)."""
        out = self.run("scontrol", "show", "job", job_id, check=False).stdout
        for word in out.split():
            if word.startswith("Restarts="):
                return int(word.split("=", 1)[1])
        return 0

    # ------------------------------------------------------------------------------------------ stop

    def stop(self) -> None:
        """Cancel every job, stop the daemons in reverse order and remove the folder."""
        if "slurmctld" in self.procs:
            self.run("scancel", "--full", "--user=root", check=False)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in _pids_of("slurmstepd"):  # job steps left by a node killed in a test
            if self._ours(pid):
                for child in [int(pid), *_descendants(int(pid))]:
                    try:
                        os.kill(child, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pids_of(name: str) -> list[str]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return out.stdout.split()


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in out]
    return children + [d for c in children for d in _descendants(c)]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` stops it too (a background job ignores Ctrl-C)
    cluster = SlurmCluster().start()
    print(f"export SLURM_CONF={cluster.conf}\n(Ctrl-C or kill {os.getpid()} stops the cluster)", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
