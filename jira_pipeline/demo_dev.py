"""`jira-pipeline dev`: `dagster dev` on this code location, optionally against the demo's fake."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from jira_pipeline.demo import DEFAULT_DIR, DemoSite, demo_environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo", action="store_true",
        help="serve a fake Jira and use the demo's Dagster home and embedded store",
    )
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="demo folder (with --demo)")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("dagster_args", nargs=argparse.REMAINDER,
                        help="more arguments for `dagster dev` (after --)")


def _dagster_dev(args: argparse.Namespace) -> int:
    extra = [a for a in args.dagster_args if a != "--"]
    command = [
        sys.executable, "-m", "dagster", "dev", "-m", "jira_pipeline.definitions",
        "-p", str(args.port), *extra,
    ]
    print("running:", " ".join(command[2:]), flush=True)
    return subprocess.call(command, env=os.environ.copy())


def run(args: argparse.Namespace) -> int:
    if not args.demo:
        return _dagster_dev(args)
    site = DemoSite(Path(args.dir))
    site.prepare(fresh=False)
    with demo_environment(site, site.record()) as fake:
        print(f"fake Jira at {fake.base_url}; Dagster home {site.dagster_home}", flush=True)
        return _dagster_dev(args)
