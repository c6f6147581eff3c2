"""The Celery app: factory, task bodies, signal wiring, embedded worker, patches."""
