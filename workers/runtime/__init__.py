"""What a process holds for one Celery app: settings, skills, executor, cache, ledger."""

from workers.runtime.services import Runtime, TaskDecorator, has_runtime, runtime_of, task_decorator

__all__ = ["Runtime", "TaskDecorator", "has_runtime", "runtime_of", "task_decorator"]
