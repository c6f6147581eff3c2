"""C5: the response cache end to end: tenant A's entry is never served to tenant B, a tampered
L2 value fails its HMAC and is recomputed, and nothing read from Redis goes through pickle.

The cache's own unit tests (tests/workers/test_cache.py) prove the mechanisms on a manager;
here jobs go through the API to real workers, so the tenant must travel with each task.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from orchestrator.harness.audit import AuditResult
from tests.conftest import ROOT
from tests.orchestrator.api.conftest import wait_status
from tests.reliability.api_support import API_OVERRIDES

PACKAGES = ("workers", "orchestrator", "tasks")
UNSAFE = re.compile(
    r"\b(pickle|cPickle|dill|cloudpickle|shelve|marshal|jsonpickle)\b|yaml\.(unsafe_)?load\("
)


def _entries(client: redis.Redis, prefix: str) -> dict[str, bytes]:
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*:cache:response:*"))
    return {key: client.get(key) or b"" for key in keys if not key.endswith(":lock")}


@pytest.mark.redis
@pytest.mark.integration
def test_c5_cache_entries_are_per_tenant_and_tampering_is_recomputed(
    redis_settings, live_api, worker_factory, tmp_path
) -> None:
    source = tmp_path / "shared.txt"
    source.write_text("the same file for both tenants\n")
    settings = redis_settings(**API_OVERRIDES, allowed_roots=[tmp_path])
    api = live_api(settings)
    worker = worker_factory(settings, concurrency=1)
    store = redis.Redis.from_url(settings.redis_url or "")
    goal = {"steps": [{"skill": "read_file", "items": [{"path": str(source)}]}]}

    def run(tenant: str) -> dict[str, object]:
        client = api.client(api.key(tenant=tenant))
        accepted = client.post("/v1/jobs", json=goal)
        assert accepted.status_code == 202, accepted.text
        job = wait_status(client, accepted.json()["job_id"], timeout_s=60)
        assert job["status"] == "succeeded", job
        (result,) = client.get(f"/v1/jobs/{job['job_id']}/results").json()["items"]
        (outcome,) = result["outcome"]
        assert outcome["ok"], outcome
        return outcome  # type: ignore[no-any-return]

    try:
        first = run("c5a")
        after_a = _entries(store, settings.key_prefix)
        assert [key for key in after_a if ":c5a:cache:" in key], after_a
        second = run("c5b")
        after_b = _entries(store, settings.key_prefix)
        # B computed its own entry under its own tenant: A's entry was not served to it.
        tenants = sorted({key.split(":")[1] for key in after_b})
        assert tenants == ["c5a", "c5b"], sorted(after_b)
        assert first["value"] == second["value"]
        # Tamper with B's stored value; a fresh worker (empty L1) must reject it and recompute.
        (b_key,) = [key for key in after_b if ":c5b:" in key]
        sealed = after_b[b_key]
        assert b"the same file" in sealed
        store.set(b_key, sealed.replace(b"the same file", b"a forged file!"), keepttl=True)
        worker.kill()
        worker_factory(settings, concurrency=1)
        third = run("c5b")
        assert third["value"] == second["value"], third
        resealed = store.get(b_key) or b""
        assert b"a forged file!" not in resealed and b"the same file" in resealed
        AuditResult(
            scenario="C5",
            accepted=3,
            completed=3,
            lost=0,
            unexpected=0,
            dup_exec=0,
            dup_effect=0,
            recovery_s=None,
            executions=3,
            extra={"entries": sorted(after_b), "tampered_value_recomputed": True},
        ).write()
    finally:
        store.close()


def test_c5_nothing_unpickles_or_unmarshals() -> None:
    """No module of ours imports pickle (or its kin): nothing read from Redis can be unpickled.

    Celery and kombu are held to JSON by the config-contract test (accept_content = json).
    """
    offenders = []
    for package in PACKAGES:
        for path in sorted(Path(ROOT, package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                code = line.split("#", 1)[0]
                if UNSAFE.search(code) and ("import" in code or "load" in code):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
    assert UNSAFE.search("import pickle") and UNSAFE.search("yaml.load(stream)")
