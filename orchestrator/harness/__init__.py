"""Test and fault harness: throwaway Redis servers, real worker processes, a TCP proxy."""

from orchestrator.harness.redis_server import RedisServer, free_port
from orchestrator.harness.worker_process import WorkerProcess

__all__ = ["RedisServer", "WorkerProcess", "free_port"]
