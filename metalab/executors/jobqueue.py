"""Executors on HPC batch systems through dask-jobqueue: SLURM and PBS.

metalab submits the worker jobs, keeps their number up while the sweep runs (adaptive
scaling, so a job lost to ``scancel``, a node failure or the walltime is replaced), and
cancels them at the end, also on errors and Ctrl-C.  In a ``with SlurmExecutor(...) as
exe:`` block the jobs are submitted once and serve every sweep of the block.  Every
keyword left at ``None`` falls back to dask's own jobqueue configuration
(``jobqueue.slurm.*`` / ``jobqueue.pbs.*`` in ``~/.config/dask/jobqueue.yaml``), then to a
small metalab default.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ExecutorConfigError, ExecutorError
from .base import Executor, Session
from .distributed import ALLOWED_FAILURES

#: Used when neither the keyword nor dask's jobqueue config sets a value.
DEFAULT_CORES = 1
DEFAULT_MEMORY = "2GiB"
DEFAULT_LOG_DIRECTORY = "metalab-worker-logs"
#: How long a vanished worker job may take to reconnect before a replacement is submitted
#: (distributed's default is 15 s; a cancelled batch job never comes back).
LOST_WORKER_TIMEOUT = "3s"


def _config(name: str, key: str) -> Any:
    import dask

    return dask.config.get(f"jobqueue.{name}.{key}", default=None)


def _check_jobs(owner: str, jobs: int | None, adapt: Any) -> tuple[int, int] | None:
    """Validate ``jobs=`` / ``adapt=``; returns ``adapt`` as a pair of ints."""
    if jobs is not None and adapt is not None:
        raise ExecutorConfigError(
            f"{owner}: give either jobs=N (a fixed number of worker jobs, "
            "lost jobs are replaced) or adapt=(min, max), not both"
        )
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise ExecutorConfigError(f"jobs must be an int >= 1, got {jobs!r}")
    if adapt is None:
        return None
    try:
        lo, hi = (int(v) for v in adapt)
    except (TypeError, ValueError):
        raise ExecutorConfigError(
            f"adapt must be a pair (min_jobs, max_jobs), got {adapt!r}"
        ) from None
    if not 0 <= lo <= hi or hi < 1:
        raise ExecutorConfigError(
            f"adapt=(min_jobs, max_jobs) needs 0 <= min <= max and max >= 1, got {adapt!r}"
        )
    return lo, hi


class JobQueueExecutor(Executor):
    """Common part of :class:`SlurmExecutor` and :class:`PBSExecutor`.

    A backend declares the class attributes below; the base does the work.
    """

    #: The dask-jobqueue cluster class, e.g. ``"SLURMCluster"``.
    cluster_class: ClassVar[str]
    #: Its section of dask's jobqueue config, e.g. ``"slurm"``.
    config_name: ClassVar[str]
    #: The batch system's name in messages, e.g. ``"SLURM"``.
    system: ClassVar[str]
    #: Command that prints the state of the worker jobs (``{ids}``: their comma-separated
    #: ids), shown when no worker connects; ``None`` when the system has none worth showing.
    queue_state_command: ClassVar[tuple[str, ...] | None] = None
    #: What the lines printed by ``queue_state_command`` show.
    queue_state_label: ClassVar[str] = ""

    def __init__(
        self,
        *,
        cores: int | None = None,
        memory: str | None = None,
        walltime: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        processes: int | None = None,
        jobs: int | None = None,
        adapt: tuple[int, int] | None = None,
        job_extra_directives: Sequence[str] | None = None,
        worker_lifetime: str | None = None,
        lifetime_stagger: str | None = None,
        resources: Mapping[str, float] | None = None,
        interface: str | None = None,
        scheduler_options: Mapping[str, Any] | None = None,
        log_directory: str | None = None,
        worker_timeout_s: float | None = 600.0,
        **cluster_kwargs: Any,
    ) -> None:
        job_range = _check_jobs(type(self).__name__, jobs, adapt)
        if worker_timeout_s is not None and worker_timeout_s <= 0:
            raise ExecutorConfigError(
                f"worker_timeout_s must be > 0 or None, got {worker_timeout_s!r}"
            )
        if lifetime_stagger is not None and worker_lifetime is None:
            raise ExecutorConfigError("lifetime_stagger= needs worker_lifetime= (e.g. '55m')")
        self.cores = cores
        self.memory = memory
        self.walltime = walltime
        self.queue = queue
        self.account = account
        self.processes = processes
        self.jobs = jobs
        self.adapt = job_range
        self.job_extra_directives = list(job_extra_directives or [])
        self.worker_lifetime = worker_lifetime
        self.lifetime_stagger = lifetime_stagger
        self.resources = dict(resources or {})
        self.interface = interface
        self.scheduler_options = dict(scheduler_options or {})
        self.log_directory = log_directory
        self.worker_timeout_s = worker_timeout_s
        self.cluster_kwargs = cluster_kwargs

    # -- building the cluster ---------------------------------------------------------

    def _job_range(self) -> tuple[int, int]:
        if self.adapt is not None:
            return self.adapt
        n = self.jobs if self.jobs is not None else 1
        return n, n

    def _processes(self, cores: int) -> int:
        if self.processes is not None:
            return self.processes
        conf = _config(self.config_name, "processes")
        # One single-threaded worker process per core: runs are usually pure Python.
        return int(conf) if conf else max(1, cores)

    def _worker_args(self) -> list[str]:
        """``dask worker`` arguments: the config's, then lifetime and resources."""
        args = list(_config(self.config_name, "worker-extra-args") or [])
        if self.worker_lifetime is not None:
            from dask.utils import parse_timedelta

            stagger = self.lifetime_stagger
            if stagger is None:  # spread retirements over a tenth of the lifetime
                stagger = f"{max(1, math.ceil(parse_timedelta(self.worker_lifetime) / 10))}s"
            args += ["--lifetime", self.worker_lifetime, "--lifetime-stagger", stagger]
        if self.resources:
            spec = " ".join(f"{k}={v:g}" for k, v in self.resources.items())
            args += ["--resources", spec]
        return args

    def cluster_options(self) -> dict[str, Any]:
        """Keyword arguments for the dask-jobqueue cluster class (after config fallback)."""
        name = self.config_name
        cores = self.cores or _config(name, "cores") or DEFAULT_CORES
        memory = self.memory or _config(name, "memory") or DEFAULT_MEMORY
        processes = self._processes(int(cores))
        kw: dict[str, Any] = {"cores": cores, "memory": memory, "processes": processes}
        for key in ("walltime", "queue", "account", "interface"):
            value = getattr(self, key)
            if value is not None:
                kw[key] = value
        if self.job_extra_directives:
            conf = _config(name, "job-extra-directives") or []
            kw["job_extra_directives"] = [*conf, *self.job_extra_directives]
        worker_args = self._worker_args()
        if worker_args:
            kw["worker_extra_args"] = worker_args
        sched = {"dashboard_address": ":0"}
        sched.update(_config(name, "scheduler-options") or {})
        sched.update(self.scheduler_options)
        kw["scheduler_options"] = sched
        log_dir = self.log_directory or _config(name, "log-directory") or DEFAULT_LOG_DIRECTORY
        kw["log_directory"] = str(Path(log_dir).resolve())
        kw.update(self.cluster_kwargs)
        return kw

    def _make_cluster(self, options: dict[str, Any]) -> Any:
        try:
            import dask_jobqueue
        except ImportError:
            raise ExecutorError(
                f"{type(self).__name__} needs dask-jobqueue: pip install dask-jobqueue"
            ) from None
        cls = getattr(dask_jobqueue, self.cluster_class)
        try:
            return cls(**options)
        except Exception as exc:
            raise ExecutorError(
                f"could not start a {self.cluster_class} ({type(exc).__name__}: {exc}); check "
                f"the {type(self).__name__}(...) arguments and dask's jobqueue config"
            ) from exc

    def job_script(self) -> str:
        """The batch script each worker job is submitted with (no job is submitted)."""
        cluster = self._make_cluster(self.cluster_options())
        try:
            return str(cluster.job_script())
        finally:
            cluster.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Submit the worker jobs, keep them up while the sweep runs, cancel them after."""
        import dask
        from distributed import Client

        lo, hi = self._job_range()
        config = {
            "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
            "distributed.deploy.lost-worker-timeout": LOST_WORKER_TIMEOUT,
        }
        options = self.cluster_options()
        with dask.config.set(config):
            cluster = self._make_cluster(options)
            try:
                # adapt, not scale: adaptive scaling resubmits jobs that were lost.
                cluster.adapt(minimum_jobs=lo, maximum_jobs=hi, interval="1s", wait_count=3)
                client = Client(cluster, set_as_default=False)
                try:
                    yield Session(
                        n_workers=max(1, hi * int(options["processes"])),
                        client=client,
                        worker_timeout_s=self.worker_timeout_s,
                        diagnose=lambda: self.diagnose(cluster, Path(options["log_directory"])),
                    )
                finally:
                    client.close()
            finally:
                cluster.close()

    # -- explaining missing workers ----------------------------------------------------

    def queue_state(self, job_ids: list[str]) -> str | None:
        """What the batch system says about these jobs (``queue_state_command``), or None."""
        if self.queue_state_command is None:
            return None
        import subprocess  # here: `import metalab` stays light

        cmd = [a.replace("{ids}", ",".join(job_ids)) for a in self.queue_state_command]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        states = res.stdout.strip() or "(none in the queue any more: they ended)"
        return f"{self.queue_state_label}: {states}"

    def diagnose(self, cluster: Any, log_dir: Path) -> str:
        """What the batch system says about the worker jobs, plus the end of their logs."""
        jobs = list(cluster.workers.values())
        ids = [str(j.job_id) for j in jobs if getattr(j, "job_id", None)]
        out = [f"{self.system} worker jobs: {', '.join(ids) or 'none submitted'}"]
        state = self.queue_state(ids) if ids else None
        if state is not None:
            out.append(state)
        logs = [p for i in ids for p in log_dir.glob(f"*-{i}.err")]
        if not logs:  # the jobs were replaced since: show the newest logs
            logs = sorted(log_dir.glob("*.err"), key=lambda p: p.stat().st_mtime)
        logs = logs[-2:]
        for log in logs:
            tail = _tail(log)
            if tail:
                out.append(f"end of {log}:\n{tail}")
        if not logs:
            out.append(f"no worker log in {log_dir}")
        return "\n".join(out)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in text[-lines:])


class SlurmExecutor(JobQueueExecutor):
    """Run the sweep on SLURM worker jobs (``dask_jobqueue.SLURMCluster``).

    Parameters
    ----------
    cores, memory
        Per job (default: dask's ``jobqueue.slurm`` config, else 1 core and 2 GiB).
        Each job runs one single-threaded worker process per core unless ``processes=``.
    walltime, queue, account
        ``#SBATCH -t``, ``-p`` and ``-A``.
    jobs
        Number of worker jobs kept running (default 1); a lost job is replaced.
    adapt
        ``(min_jobs, max_jobs)``: scale with the amount of pending work instead.
    job_extra_directives
        More ``#SBATCH`` lines, e.g. ``["--gres=gpu:1", "--qos=short"]``.
    worker_lifetime, lifetime_stagger
        Retire workers gracefully before the walltime (e.g. ``"55m"`` for a 1-hour
        walltime); a replacement job picks up, no finished run is lost.
    resources
        Dask worker resources the workers offer, e.g. ``{"GPU": 1}`` for operations
        declared with ``@operation(resources={"GPU": 1})``.
    interface, scheduler_options
        Network of the scheduler, e.g. ``interface="ib0"``.
    log_directory
        Worker job logs (default ``./metalab-worker-logs``).
    worker_timeout_s
        Fail with :class:`~metalab.ExecutorError` when no usable worker is connected for
        this long (jobs stuck in the queue, workers that cannot start). ``None`` waits.
    **cluster_kwargs
        Passed to ``SLURMCluster`` unchanged (``python=``, ``job_script_prologue=``, ...).

    Examples
    --------
    >>> ex = SlurmExecutor(cores=4, memory="16GB", walltime="02:00:00", jobs=10)
    >>> metalab.run(exp, executor=ex)  # doctest: +SKIP
    """

    cluster_class = "SLURMCluster"
    config_name = "slurm"
    system = "SLURM"
    queue_state_command = ("squeue", "-h", "-j", "{ids}", "-o", "%i %T %r")
    queue_state_label = "squeue (job state reason)"


class PBSExecutor(JobQueueExecutor):
    """Run the sweep on PBS / Torque worker jobs (``dask_jobqueue.PBSCluster``).

    Takes the same arguments as :class:`SlurmExecutor`; ``account`` becomes ``#PBS -A``
    and ``resource_spec=`` (e.g. ``"select=1:ncpus=4:mem=16GB"``) is passed through.
    """

    cluster_class = "PBSCluster"
    config_name = "pbs"
    system = "PBS"
