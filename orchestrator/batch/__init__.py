"""Batch runs: one skill over a streamed input, chunked, bounded in flight, resumable."""

from orchestrator.batch.driver import BatchDriver, BatchOptions, DriverStats
from orchestrator.batch.handle import BatchHandle, start_batch
from orchestrator.batch.inputs import BatchInputError, InputSource, count_records, input_source
from orchestrator.batch.record import RunCancelledError, RunNotFoundError, RunRecord, RunStore
from orchestrator.batch.report import write_report
from orchestrator.batch.runs import BatchRequest, drive_run, open_run, open_store, plan_summary

__all__ = [
    "BatchDriver",
    "BatchHandle",
    "BatchInputError",
    "BatchOptions",
    "BatchRequest",
    "DriverStats",
    "InputSource",
    "RunCancelledError",
    "RunNotFoundError",
    "RunRecord",
    "RunStore",
    "count_records",
    "drive_run",
    "input_source",
    "open_run",
    "open_store",
    "plan_summary",
    "start_batch",
    "write_report",
]
