"""`jira-pipeline where`: which MongoDB store the code location uses, and how to query it.

The embedded store lives in `$DAGSTER_HOME/mongo`, else in `./.jira_pipeline/mongo` under the
current directory: a query run without the same DAGSTER_HOME (or from another directory) opens
another, empty store and silently finds nothing. This command says which one applies here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jira_pipeline.demo import DEFAULT_DIR, DemoSite, query_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="the store of `jira-pipeline demo` instead of the configured one")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="demo folder (with --demo)")


def describe_store(*, demo_dir: Path | None = None) -> list[str]:
    """Lines that say where the store is, whether it holds anything, and how to query it."""
    from jira_pipeline.settings import load_settings
    from jira_pipeline.storage.client import database_name, embedded_store_folder, mask_uri

    if demo_dir is not None:
        site = DemoSite(demo_dir)
        state = "" if site.store_folder.is_dir() else " (nothing yet: run `jira-pipeline demo`)"
        return [
            f"embedded store of the demo in {demo_dir}: {site.store_folder.resolve()}{state}",
            f"database: {database_name()}",
            "query it with:",
            f"  {query_command(site)}",
        ]
    settings = load_settings()
    if settings.mongodb_uri is not None:
        uri = mask_uri(settings.mongodb_uri.get_secret_value())
        return [f"MongoDB server {uri} (MONGODB_URI)", f"database: {database_name()}"]
    folder = embedded_store_folder().resolve()
    home = settings.dagster_home
    origin = ("$DAGSTER_HOME/mongo" if home
              else "DAGSTER_HOME is not set: ./.jira_pipeline/mongo under the current directory")
    state = "" if folder.is_dir() else " (nothing stored here yet)"
    lines = [
        f"embedded store: {folder}{state}",
        f"  ({origin}; set MONGODB_URI to use a server)",
        f"database: {database_name()}",
        "query it with:",
        f"  DAGSTER_HOME={folder.parent} {sys.executable} -c \"from jira_pipeline.storage.client "
        "import get_database; print(get_database().jira_issues.find_one({}, {'raw': 0}))\""
        if home else
        f"  cd {Path.cwd()} && {sys.executable} -c \"from jira_pipeline.storage.client "
        "import get_database; print(get_database().jira_issues.find_one({}, {'raw': 0}))\"",
    ]
    demo = DemoSite(DEFAULT_DIR)
    if demo.store_folder.is_dir() and demo.store_folder.resolve() != folder:
        lines.append(f"the demo's store is elsewhere: {demo.store_folder.resolve()} "
                     "(`jira-pipeline where --demo`)")
    return lines


def run(args: argparse.Namespace) -> int:
    print("\n".join(describe_store(demo_dir=args.dir if args.demo else None)))
    return 0
