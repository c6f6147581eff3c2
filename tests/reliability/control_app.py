"""The A2 control run's worker app: our app with stock Celery's handling of a lost pool child.

``task_reject_on_worker_lost`` off and ``task_acks_on_timeout`` on (Celery's defaults with
acks late): a killed child's task is acked as failed. Only the control run uses this, to prove
the A2 test can see a lost task; ``check_config`` refuses it everywhere else.
"""

from __future__ import annotations

from workers.celery_app.factory import create_app

app = create_app()
app.conf.task_reject_on_worker_lost = False
app.conf.task_acks_on_timeout = True
for _task in app.tasks.values():  # tasks bound before the change keep their own copy
    _task.reject_on_worker_lost = False
    _task.acks_on_timeout = True
