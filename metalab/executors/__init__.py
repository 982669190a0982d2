"""Executors: where the partitions of a sweep run."""

from .base import Executor, Session
from .distributed import DaskExecutor, ProcessExecutor
from .jobqueue import PBSExecutor, SlurmExecutor
from .local import LocalExecutor, ThreadExecutor

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "PBSExecutor",
    "ProcessExecutor",
    "Session",
    "SlurmExecutor",
    "ThreadExecutor",
]
