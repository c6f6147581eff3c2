"""``victor submit`` and ``victor jobs``: the API's command-line client (httpx)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.table import Table

from orchestrator.cli.outcome import exit_with_status, print_outcome
from orchestrator.cli.support import console, job_progress, out
from orchestrator.cli.support import settings_or_exit as _settings
from workers.core.errors import ApiClientError, ApiRequestError
from workers.core.settings import Settings

TERMINAL = ("succeeded", "partial", "failed", "revoked")


def api_client(settings: Settings) -> httpx.Client:
    """An httpx client for VICTOR_API_URL with VICTOR_API_KEY as the bearer token."""
    key = settings.api_key.get_secret_value()
    if not key:
        raise ApiClientError(
            "no API key; set VICTOR_API_KEY (create one with victor api-key create --tenant T)"
        )
    return httpx.Client(
        base_url=settings.api_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(30.0, read=60.0),
    )


# Answers that say the request itself is wrong (body, JSON, content type, goal): exit 2, as
# ``victor run`` gives for the same goal.
REQUEST_ERRORS = frozenset({400, 413, 415, 422})


def checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        refused = ApiRequestError if response.status_code in REQUEST_ERRORS else ApiClientError
        raise refused(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {message}"
        )
    return response.json()


def request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return checked(client.request(method, path, **kwargs))
    except httpx.TransportError as exc:
        raise ApiClientError(
            f"cannot reach the API at {client.base_url}: {exc}; is victor api running "
            "(VICTOR_API_URL)?"
        ) from exc


def sse_events(
    client: httpx.Client, path: str, last_event_id: str | None = None
) -> Iterator[tuple[str, str | None, Any]]:
    """``(event, id, data)`` from the stream at ``path``, reconnecting with Last-Event-ID."""
    attempts = 0
    while True:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        try:
            with client.stream(
                "GET", path, headers=headers, timeout=httpx.Timeout(30.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    checked(response)
                event, event_id, data = "message", None, None
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line[5:].strip())
                    elif not line and data is not None:
                        attempts = 0
                        if event_id:
                            last_event_id = event_id
                        yield event, event_id, data
                        if event == "end":
                            return
                        event, event_id, data = "message", None, None
        except httpx.TransportError as exc:
            attempts += 1
            if attempts > 5:
                raise ApiClientError(f"lost the event stream {path}: {exc}") from exc
            time.sleep(min(5.0, 0.5 * attempts))


def follow(client: httpx.Client, accepted: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Show a progress bar from the job's event stream; return the final job."""
    job: dict[str, Any] = {}
    with job_progress(quiet) as progress:
        bar = progress.add_task(
            f"job {accepted['job_id'][:12]}", total=accepted["total_tasks"] or 1
        )
        speaker: tuple[str, int] | None = None  # the item whose streamed text is showing
        for event, _, data in sse_events(client, accepted["links"]["events"]):
            if event == "item.delta" and not quiet:
                # A skill that streams (chat) shows its text as it comes, above the bar.
                if speaker != (data["task_id"], data["item"]):
                    if speaker is not None:
                        progress.console.print()
                    speaker = (data["task_id"], data["item"])
                    progress.console.print(f"[dim]item {data['item']}:[/dim] ", end="")
                progress.console.print(data["text"], end="", markup=False, highlight=False)
            elif event == "progress":
                progress.update(bar, completed=data["done"], total=data["total"] or 1)
            elif event == "result":
                progress.advance(bar)
            elif event == "error":
                raise ApiClientError(data.get("message", "the event stream failed"))
            elif event == "end":
                job = data
        if speaker is not None:
            progress.console.print()
    return job


def wait(client: httpx.Client, accepted: dict[str, Any], poll_s: float = 0.25) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = request(client, "GET", accepted["links"]["self"])
        if job["status"] in TERMINAL:
            return job
        time.sleep(poll_s)


def submit(
    goal_file: Path = typer.Argument(..., help="Goal spec, .json or .yaml."),
    wait_for_end: bool = typer.Option(False, "--wait", help="Poll until the job ends."),
    follow_events: bool = typer.Option(False, "--follow", help="Stream results with a bar."),
    idempotency_key: str = typer.Option(None, "--idempotency-key", help="Retry-safe key."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """Submit a goal spec to the API (VICTOR_API_URL, VICTOR_API_KEY)."""
    from orchestrator.core.goals import load_goal_file

    settings = _settings()
    goal = load_goal_file(goal_file)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with api_client(settings) as client:
        accepted = request(
            client,
            "POST",
            "/v1/jobs",
            json=goal.model_dump(mode="json", exclude_unset=True),
            headers=headers,
        )
        if not (wait_for_end or follow_events):
            out.print_json(json.dumps(accepted))
            return
        if not as_json:
            console.print(f"job {accepted['job_id']}: {accepted['total_tasks']} tasks")
        job = follow(client, accepted, as_json) if follow_events else wait(client, accepted)
    out.print_json(json.dumps(job))
    if not as_json and job.get("status") != "succeeded":
        print_outcome(job)
    exit_with_status(job)


jobs_app = typer.Typer(name="jobs", help="Your tenant's jobs: list them, show one.")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List your tenant's jobs, newest first (``victor jobs show ID`` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    with api_client(settings) as client:
        page = request(client, "GET", "/v1/jobs", params={"limit": limit})
    if as_json:
        out.print_json(json.dumps(page["items"]))
        return
    table = Table(title="jobs")
    for column in ("job", "name", "status", "tasks", "created"):
        table.add_column(column)
    for job in page["items"]:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["created_at"]))
        table.add_row(
            job["job_id"],
            job["name"],
            job["status"],
            f"{job['done_tasks']}/{job['total_tasks']}",
            created,
        )
    out.print(table)


@jobs_app.command("show")
def show_job(
    job_id: str = typer.Argument(..., help="The job id that submit or run printed."),
    follow_events: bool = typer.Option(False, "--follow", help="Follow it to its end."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """Show one job with its failures; exit as its status says (README: Exit codes)."""
    settings = _settings()
    with api_client(settings) as client:
        job: dict[str, Any] = request(client, "GET", f"/v1/jobs/{job_id}")
        if follow_events and job["status"] not in TERMINAL:
            job = wait(client, {"links": job["links"]})
    out.print_json(json.dumps(job))
    if not as_json and job["status"] in TERMINAL and job["status"] != "succeeded":
        print_outcome(job)
    if job["status"] in TERMINAL:
        exit_with_status(job)


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command()(submit)
    app.add_typer(jobs_app)
