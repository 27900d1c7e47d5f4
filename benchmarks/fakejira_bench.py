"""Benchmark the fake Jira: issues/s of `fields=*all` search pages, and RSS holding 100k issues.

Runs the fake as a separate process (`jira-pipeline fake-jira`), as the demo does, so the client
and the server do not share a GIL and the RSS figure is the server's alone.
Prints one JSON object on its last line: {"issues_per_s": ..., "rss_mb_100k": ...}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx
import orjson
import psutil

NOW = "2026-01-15T12:00:00Z"


def start_fake(issues: int, seed: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0",
         "--issues", str(issues), "--seed", str(seed), "--now", NOW],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # "fake Jira (cloud) serving N issues at http://..."
    base = first.rsplit(" ", 1)[-1].strip()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/_fake/stats", timeout=5)
            return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("fake Jira did not come up")


def walk(base: str, jql: str, page_size: int, limit: int) -> int:
    served = 0
    token = None
    with httpx.Client(base_url=base, auth=("demo@example.com", "demo-token"), timeout=60) as c:
        while served < limit:
            body = {"jql": jql, "fields": ["*all"], "maxResults": page_size}
            if token:
                body["nextPageToken"] = token
            response = c.post("/rest/api/3/search/jql", json=body)
            response.raise_for_status()
            page = orjson.loads(response.content)
            served += len(page["issues"])
            if page["isLast"]:
                break
            token = page["nextPageToken"]
    return served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--pages-of", type=int, default=100, help="page size (Jira's cap)")
    parser.add_argument("--walk", type=int, default=10_000, help="issues to page through")
    args = parser.parse_args()
    process, base = start_fake(args.issues, seed=1)
    try:
        rss_mb = psutil.Process(process.pid).memory_info().rss / 2**20
        jql = "project in (CORE, WEB, OPS, DATA, MOB) ORDER BY updated ASC"
        walk(base, jql, args.pages_of, args.pages_of)  # warm the query cache
        started = time.perf_counter()
        served = walk(base, jql, args.pages_of, args.walk)
        elapsed = time.perf_counter() - started
        rss_after_mb = psutil.Process(process.pid).memory_info().rss / 2**20
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"served {served} issues (fields=*all, {args.pages_of}/page) in {elapsed:.2f}s; "
          f"server RSS {rss_mb:.0f} MB at start, {rss_after_mb:.0f} MB after", file=sys.stderr)
    print(json.dumps({"issues_per_s": round(served / elapsed), "rss_mb_100k":
                      round(max(rss_mb, rss_after_mb), 1), "issues": args.issues,
                      "page_size": args.pages_of, "issues_walked": served}))


if __name__ == "__main__":
    main()
