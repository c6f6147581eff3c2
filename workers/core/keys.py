"""Every Redis key and key prefix victor-fleet uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder bound to one key prefix (``Settings.key_prefix``)."""

    prefix: str = "victor"

    # Celery's own key spaces
    @property
    def broker_prefix(self) -> str:
        return f"{self.prefix}:q:"

    @property
    def backend_prefix(self) -> str:
        return f"{self.prefix}:r:"

    # job store / ledger
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_tasks(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:tasks"

    def job_results(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:results"

    def job_done(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:done"

    def job_events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def job_changes(self, job_id: str) -> str:
        """A pub/sub channel: a message each time the job's results or status change."""
        return f"{self.prefix}:job:{job_id}:changes"

    def job_deltas(self, job_id: str) -> str:
        """A job's streamed text deltas (``item.delta`` events), apart from its results."""
        return f"{self.prefix}:job:{job_id}:deltas"

    def jobs_index(self, tenant: str) -> str:
        return f"{self.prefix}:jobs:{tenant}"

    def jobs_in_flight(self, tenant: str) -> str:
        """The tenant's submitted jobs not yet seen to end (the API prunes it lazily)."""
        return f"{self.prefix}:inflight:{tenant}"

    def items_in_flight(self, tenant: str) -> str:
        """Items per job of ``jobs_in_flight`` and their ``total`` (a hash)."""
        return f"{self.prefix}:inflight-items:{tenant}"

    def ledger_open(self) -> str:
        return f"{self.prefix}:ledger:open"

    def ledger_deliveries(self) -> str:
        return f"{self.prefix}:ledger:deliveries"

    def dead_letters(self) -> str:
        return f"{self.prefix}:dlq"

    def reconcile_lock(self) -> str:
        return f"{self.prefix}:ledger:reconcile:lock"

    def effect(self, task_key: str) -> str:
        return f"{self.prefix}:effect:{task_key}"

    def idempotency(self, tenant: str, key_hash: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key_hash}"

    # batch runs: the run record, its committed-chunk bitmap, the index of runs by tenant
    def batch_run(self, run_id: str) -> str:
        return f"{self.prefix}:batch:{run_id}"

    def batch_chunks(self, run_id: str) -> str:
        return f"{self.prefix}:batch:{run_id}:chunks"

    def batch_runs(self, tenant: str) -> str:
        return f"{self.prefix}:batches:{tenant}"

    # API
    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}:apikey:{key_hash}"

    def rate_limit(self, key_id: str, window: int) -> str:
        return f"{self.prefix}:rate:{key_id}:{window}"

    # workers
    def worker_ready(self, hostname: str) -> str:
        return f"{self.prefix}:worker:{hostname}:ready"

    def worker_ready_pattern(self) -> str:
        return f"{self.prefix}:worker:*:ready"

    # The ready key doubles as the heartbeat (a short TTL, refreshed while the worker runs);
    # the index maps each worker incarnation to its hostname, the holdings hash maps the
    # delivery tags a worker incarnation holds to "job_id|task_id".
    def worker_index(self) -> str:
        return f"{self.prefix}:worker:index"

    def worker_holdings(self, hostname: str, incarnation: str) -> str:
        return f"{self.prefix}:worker:{hostname}:{incarnation}:holdings"

    def worker_recovery_lock(self) -> str:
        return f"{self.prefix}:worker:recovery:lock"

    # cache
    def cache(self, tenant: str, cache: str, skill: str, version: str, digest: str) -> str:
        return f"{self.prefix}:{tenant}:cache:{cache}:{skill}:{version}:{digest}"

    def cache_pattern(self, tenant: str, cache: str) -> str:
        return f"{self.prefix}:{tenant}:cache:{cache}:*"

    def cache_lock(self, key: str) -> str:
        return f"{key}:lock"

    def cache_channel(self) -> str:
        return f"{self.prefix}:cache:invalidate"

    def cache_stats(self, process_id: str) -> str:
        return f"{self.prefix}:cache:stats:{process_id}"

    def cache_stats_pattern(self) -> str:
        return f"{self.prefix}:cache:stats:*"

    def cache_ack(self, message_id: str) -> str:
        return f"{self.prefix}:cache:ack:{message_id}"

    # metrics
    def metrics_bucket(self, kind: str, name: str, bucket: int) -> str:
        return f"{self.prefix}:metrics:{kind}:{name}:{bucket}"

    def metrics_process(self, process_id: str) -> str:
        return f"{self.prefix}:metrics:proc:{process_id}"

    def metrics_process_pattern(self) -> str:
        return f"{self.prefix}:metrics:proc:*"

    def metrics_processes(self) -> str:
        return f"{self.prefix}:metrics:procs"

    def metrics_skills(self) -> str:
        return f"{self.prefix}:metrics:skills"

    def metrics_worker(self, hostname: str) -> str:
        return f"{self.prefix}:metrics:worker:{hostname}"

    def metrics_workers(self) -> str:
        return f"{self.prefix}:metrics:workers"

    def metrics_worker_totals(self, hostname: str) -> str:
        """Counters a worker's processes only add to (the tuner reads their differences)."""
        return f"{self.prefix}:metrics:worker:{hostname}:totals"

    # tuner
    def tuner_lease(self) -> str:
        return f"{self.prefix}:tuner:lease"

    def tuner_worker(self, hostname: str) -> str:
        return f"{self.prefix}:tuner:worker:{hostname}"

    def tuner_decisions(self) -> str:
        return f"{self.prefix}:tuner:decisions"

    def tuner_fleet(self) -> str:
        return f"{self.prefix}:tuner:fleet"

    def metrics_job(self, job_id: str) -> str:
        return f"{self.prefix}:metrics:job:{job_id}"

    def broker_queue(self, queue: str) -> str:
        return f"{self.broker_prefix}{queue}"

    # providers: a sorted set of slot holder -> lease expiry (ms), per provider
    def provider_slots(self, provider: str) -> str:
        return f"{self.prefix}:provider:{provider}:slots"

    def provider_waiters(self, provider: str) -> str:
        """Calls waiting for one of ``provider``'s slots: holder -> wait lease expiry (ms)."""
        return f"{self.prefix}:provider:{provider}:waiters"

    # monitoring and memory
    def monitor_state(self) -> str:
        return f"{self.prefix}:monitor:state"

    def monitor_lock(self) -> str:
        return f"{self.prefix}:monitor:lock"

    def episodes(self) -> str:
        return f"{self.prefix}:memory:episodes"

    def episodes_index(self) -> str:
        return f"{self.prefix}:memory:episodes:index"

    def facts(self) -> str:
        return f"{self.prefix}:memory:facts"
