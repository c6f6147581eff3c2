"""The A2 control run's worker app: our app with ``task_reject_on_worker_lost`` off.

Only the control run uses it, to prove the A2 test can see a lost task; ``check_config``
refuses this setting everywhere else.
"""

from __future__ import annotations

from workers.app import create_app

app = create_app()
app.conf.task_reject_on_worker_lost = False
