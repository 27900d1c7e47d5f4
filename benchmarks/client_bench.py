"""Walk every issue of a fake Jira (20,000 issues, 100 ms latency) with the real client.

Prints one JSON object on its last line: issues, issues_per_s, seconds, cpu_s (this process's
CPU during the walk), api_calls, search_calls (target: at most 1.02 x ceil(issues / 100)),
wait_s, and more. The fake runs in a subprocess through the `jira-pipeline fake-jira` command so
that serving and walking do not share one interpreter; `--base-url` walks a fake (or a site)
already running instead, over the window `--start`/`--end` (sync_bench.py's bare-client figure:
the same fields, expand and JQL as the `jira_issues` asset asks).

    python benchmarks/client_bench.py [--issues 20000] [--latency-ms 100] [--parallelism 4]
        [--base-url URL --start ISO --end ISO]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from jira_pipeline.jira import BasicAuth, IssueWindow, JiraClient, RateLimiter, RetryPolicy

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
EMAIL, TOKEN = "bench@example.com", "bench-token"


def start_fake(args) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0",
        "--issues", str(args.issues), "--days", str(args.days), "--seed", "1",
        "--latency-ms", str(args.latency_ms), "--now", NOW.isoformat(),
        "--email", EMAIL, "--api-token", TOKEN,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if "JIRA_BASE_URL=" in line:
            return process, line.split("JIRA_BASE_URL=", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("the fake Jira did not start")


def bench_window(args) -> IssueWindow:
    if args.start and args.end:
        return IssueWindow(datetime.fromisoformat(args.start), datetime.fromisoformat(args.end))
    return IssueWindow(NOW - timedelta(days=args.days + 1), NOW + timedelta(days=1))


async def walk(base_url: str, args) -> dict:
    window = bench_window(args)
    limiter = RateLimiter(args.min_interval_ms / 1000, max_in_flight=args.parallelism)
    async with JiraClient(BasicAuth(EMAIL, TOKEN), base_url, limiter=limiter,
                          retry=RetryPolicy()) as client:
        started, cpu_started = time.perf_counter(), time.process_time()
        seen: set[str] = set()
        async for issue in client.search_window(window, fields=("*all",), expand=("changelog",),
                                                parallelism=args.parallelism):
            seen.add(issue["id"])
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        counters = client.counters
    return {
        "issues": len(seen),
        "issues_per_s": round(len(seen) / elapsed, 1),
        "seconds": round(elapsed, 2),
        "cpu_s": round(cpu, 2),
        "api_calls": counters.api_calls,
        "search_calls": counters.search_calls,
        "count_calls": counters.count_calls,
        "search_calls_target": math.floor(1.02 * math.ceil(args.issues / 100)),
        "retries": counters.retries,
        "rate_limit_waits": counters.rate_limit_waits,
        "wait_s": counters.wait_seconds,
        "mb_received": round(counters.bytes_received / 1e6, 1),
        "parallelism": args.parallelism,
        "min_request_interval_ms": args.min_interval_ms,
        "latency_ms": args.latency_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--min-interval-ms", type=int, default=200)
    parser.add_argument("--base-url", help="walk this running fake (or site) instead of one's own")
    parser.add_argument("--start", help="ISO-8601 start of the window walked (with --end)")
    parser.add_argument("--end", help="ISO-8601 end of the window walked (with --start)")
    args = parser.parse_args()
    if args.base_url:
        result = asyncio.run(walk(args.base_url, args))
    else:
        process, base_url = start_fake(args)
        try:
            result = asyncio.run(walk(base_url, args))
        finally:
            process.terminate()
            process.wait(timeout=30)
    if result["issues"] != args.issues:
        print(f"walked {result['issues']} issues, expected {args.issues}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
