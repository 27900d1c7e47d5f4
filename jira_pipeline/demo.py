"""`jira-pipeline demo`: a fake Jira synced into an embedded store through Dagster, one command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".jira_pipeline") / "demo"
DEMO_ISSUES = 2000
DEMO_DAYS = 30
DEMO_SEED = 1
# A file that marks a folder as the demo's own, so `--dir` never wipes anything else.
_MARKER = ".jira-pipeline-demo"
# Settings of another site that would mix into the demo's if left in the environment.
_OTHER_SITE_VARIABLES = ("JIRA_PAT", "JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET",
                         "JIRA_PROJECTS", "JIRA_CLOUD_ID")
REPO_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


@dataclass(frozen=True)
class DemoRecord:
    """The fake Jira a demo served. The same port keeps the site URL, and so the connection id
    of everything stored, the same when `jira-pipeline dev --demo` serves it again; the same
    clock start (`now`, ISO 8601) keeps the seeded data equal to what was stored, so the first
    sensor tick after a restart finds nothing changed."""

    issues: int = DEMO_ISSUES
    days: int = DEMO_DAYS
    seed: int = DEMO_SEED
    port: int = 0
    now: str | None = None

    def clock_start(self) -> datetime | None:
        from jira_pipeline.timeutil import TimestampError, parse_jira_datetime

        try:
            return parse_jira_datetime(self.now) if self.now else None
        except TimestampError:
            return None

    def free_port(self) -> int:
        if not self.port:
            return 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                print(f"port {self.port} is taken: the fake Jira gets another, so the demo's "
                      "data will show as a second site", file=sys.stderr)
                return 0
        return self.port


@dataclass(frozen=True)
class DemoSite:
    """Where a demo's fake Jira and Dagster instance live."""

    folder: Path

    @property
    def dagster_home(self) -> Path:
        return self.folder / "dagster_home"

    @property
    def record_file(self) -> Path:
        return self.folder / "demo.json"

    @property
    def store_folder(self) -> Path:
        """The embedded store the demo writes (`$DAGSTER_HOME/mongo`)."""
        return self.dagster_home / "mongo"

    def record(self) -> DemoRecord:
        """What the last demo in this folder served, so `dev --demo` serves the same site."""
        try:
            return DemoRecord(**json.loads(self.record_file.read_text()))
        except (OSError, ValueError, TypeError):
            return DemoRecord()

    def prepare(self, *, fresh: bool) -> None:
        if self.folder.exists() and fresh:
            if not (self.folder / _MARKER).exists() and any(self.folder.iterdir()):
                raise SystemExit(
                    f"jira-pipeline demo: {self.folder} exists and is not a demo folder; "
                    "choose another --dir"
                )
            shutil.rmtree(self.folder)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.folder / _MARKER).touch()
        target = self.dagster_home / "dagster.yaml"
        if REPO_DAGSTER_YAML.is_file():
            shutil.copyfile(REPO_DAGSTER_YAML, target)
        elif not target.exists():
            target.write_text("telemetry:\n  enabled: false\n")


@contextmanager
def demo_environment(site: DemoSite, record: DemoRecord) -> Iterator[Any]:
    """Start the fake Jira and point this process's environment at it and at the demo store."""
    from jira_pipeline.fakejira import FakeJiraConfig, run_fake_jira

    config = FakeJiraConfig(issues=record.issues, days=record.days, seed=record.seed,
                            now=record.clock_start())
    with run_fake_jira(config, port=record.free_port()) as fake:
        port = int(fake.base_url.rsplit(":", 1)[1])
        clock_start = fake.site.start
        site.record_file.write_text(json.dumps(asdict(
            replace(record, port=port, now=clock_start.isoformat())
        )))
        # From the fake's clock start, not today: the partition set stays where the data is.
        start = (clock_start - timedelta(days=record.days)).date()
        os.environ.pop("MONGODB_URI", None)  # the demo never writes to a configured server
        for name in _OTHER_SITE_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(
            {
                "DAGSTER_HOME": str(site.dagster_home.resolve()),
                "JIRA_BASE_URL": fake.base_url,
                "JIRA_EMAIL": config.email,
                "JIRA_API_TOKEN": config.api_token,
                "JIRA_SYNC_START_DATE": start.isoformat(),
            }
        )
        yield fake


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR,
        help=f"demo folder: Dagster home and embedded store (default {DEFAULT_DIR})",
    )
    parser.add_argument("--issues", type=int, default=DEMO_ISSUES)
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--verbose", action="store_true",
                        help="print Dagster's event log of the run (DEBUG) besides the summary")


def run(args: argparse.Namespace) -> int:
    site = DemoSite(args.dir)
    site.prepare(fresh=True)
    started = time.perf_counter()
    record = DemoRecord(issues=args.issues, days=args.days, seed=args.seed)
    with demo_environment(site, record) as fake:
        import dagster as dg

        from jira_pipeline.assets.factory import build_definitions
        from jira_pipeline.assets.jobs import HISTORY_ASSETS
        from jira_pipeline.assets.partitions import partition_key_for
        from jira_pipeline.assets.schedules import partition_range_tags
        from jira_pipeline.storage.resources import MongoResource
        from jira_pipeline.timeutil import utc_now

        print(f"fake Jira at {fake.base_url} ({args.issues} issues over {args.days} days)")
        defs = build_definitions()
        job = defs.resolve_job_def("jira_sync_job")
        partitions = job.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        first = partitions.get_first_partition_key()
        assert first is not None  # JIRA_SYNC_START_DATE lies before today
        last = partition_key_for(partitions, utc_now())
        print(f"materializing every asset, partitions {first}..{last}, through Dagster ...")
        # The console logger shows Dagster's whole event log (over a hundred DEBUG lines): only
        # with --verbose; otherwise warnings and errors, then the summary below.
        level = "DEBUG" if args.verbose else "WARNING"
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(
                instance=instance, tags=partition_range_tags(first, last), raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": level}}}},
            )
        db = MongoResource().get_database()
        expected = _fake_counts(fake)
        print()
        # Derived from the stored issues and changelogs: no count in Jira to compare with.
        derived = [name for name in (*HISTORY_ASSETS, "jira_issue_daily_summary")
                   if name not in expected]
        width = max(len(name) for name in [*expected, *derived])
        print(f"{'collection':<{width}} {'stored':>8} {'in fake Jira':>13}")
        ok = result.success
        for collection, count in expected.items():
            stored = db[collection].count_documents({"is_deleted": {"$ne": True}})
            ok = ok and stored == count
            print(f"{collection:<{width}} {stored:>8} {count:>13}")
        for collection in derived:
            print(f"{collection:<{width}} {db[collection].count_documents({}):>8} "
                  f"{'(derived)':>13}")
        print()
        evaluations = result.get_asset_check_evaluations()
        failed = [e.asset_check_key.to_user_string() for e in evaluations if not e.passed]
        ok = ok and not failed
        print(f"asset checks: {len(evaluations) - len(failed)} of {len(evaluations)} passed"
              + (f"; FAILED: {', '.join(failed)}" if failed else ""))
        print(f"run {'succeeded' if result.success else 'FAILED'} in "
              f"{time.perf_counter() - started:.1f}s (run id {result.run_id})")
    print()
    command = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "jira-pipeline"
    program = Path(sys.executable).parent / command
    hint = "  (or `make dev`)" if args.dir == DEFAULT_DIR else ""
    print("Open the same data in the Dagster UI (serves the same fake Jira again):")
    print(f"  {program} dev --demo --dir {args.dir}{hint}")
    print(f"The embedded store is in {site.store_folder.resolve()}; query it with")
    print(f"  {query_command(site)}")
    print(f"(`{program} where --demo --dir {args.dir}` prints this again.)")
    return 0 if ok else 1


def query_command(site: DemoSite) -> str:
    """A shell command that reads one stored issue from the demo's store (DAGSTER_HOME set)."""
    return (f"DAGSTER_HOME={site.dagster_home.resolve()} {sys.executable} -c "
            "\"from jira_pipeline.storage.client import get_database; "
            "print(get_database().jira_issues.find_one({}, {'raw': 0}))\"")


def _fake_counts(fake: Any) -> dict[str, int]:
    from jira_pipeline.fakejira.agile import agile_counts, sprint_membership
    from jira_pipeline.fakejira.links import link_row_count
    from jira_pipeline.fakejira.project_parts import project_part_counts
    from jira_pipeline.fakejira.reference import reference_counts
    from jira_pipeline.fakejira.worklogs import live_worklogs

    data = fake.site.data
    return {
        "jira_projects": len(data.projects),
        "jira_statuses": len(data.statuses),
        "jira_users": len(data.users),
        "jira_issues": sum(1 for issue in data.issues if not issue.deleted),
        "jira_fields": len(fake.site.renderer(fake.base_url).field_details()),
        "jira_issue_comments": sum(fake.site.renderer(fake.base_url).comments(issue, None)["total"]
                                   for issue in data.issues if not issue.deleted),
        "jira_issue_changelogs": sum(len(fake.site.renderer(fake.base_url).histories(issue))
                                     for issue in data.issues if not issue.deleted),
        "jira_worklogs": live_worklogs(data),
        **reference_counts(fake.site.renderer(fake.base_url)),
        **project_part_counts(fake.site.renderer(fake.base_url)),
        **link_row_count(fake.site.renderer(fake.base_url)),
        **agile_counts(fake.site.renderer(fake.base_url)),
        # Derived, and checked against the fake's ground truth: one row per sprint and issue.
        "jira_sprint_issues": sum(len(issues) for issues in sprint_membership(data).values()),
    }


if __name__ == "__main__":
    sys.exit(run(argparse.ArgumentParser().parse_args()))
