"""``victor bench GROUP``: benchmarks that measure ours and the peer's in one run."""

from __future__ import annotations

import json

import typer

bench_app = typer.Typer(help="Benchmarks: ours beside the peer's, as ratios.", no_args_is_help=True)
