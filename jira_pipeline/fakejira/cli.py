"""`jira-pipeline fake-jira`: serve a seeded fake Jira on a port until stopped."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn

from jira_pipeline.fakejira.config import FakeJiraConfig
from jira_pipeline.fakejira.server import FakeJiraStartError, listening_socket, uvicorn_config
from jira_pipeline.fakejira.site import FakeJiraSite
from jira_pipeline.timeutil import TimestampError, parse_jira_datetime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = FakeJiraConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8080, help="port to listen on; 0 picks a free one")
    add("--seed", type=int, default=defaults.seed, help="dataset seed: same seed, same bytes")
    add("--projects", type=int, default=defaults.projects)
    add("--users", type=int, default=defaults.users)
    add("--issues", type=int, default=defaults.issues)
    add("--days", type=int, default=defaults.days, help="issues spread over this many days")
    # The fake's own demo credentials (no real secret): shown here as in the start-up banner.
    add("--email", default=defaults.email, help="Cloud basic-auth user (default %(default)s)")
    add("--api-token", default=defaults.api_token,
        help="Cloud basic-auth API token (default %(default)s)")
    add("--pat", default=defaults.pat,
        help="Data Center personal access token (default %(default)s)")
    add("--user-timezone", default=defaults.user_timezone,
        help="the searching user's zone: JQL date strings are read in it")
    add("--latency-ms", type=float, default=defaults.latency_ms, help="delay every API answer")
    add("--rate-limit", type=float, default=defaults.rate_limit,
        help="requests/s per credential (token bucket); 0 = off")
    add("--burst", type=int, default=defaults.burst, help="token-bucket capacity")
    add("--fault-rate", type=float, default=defaults.fault_rate,
        help="share of API requests answered with 500/502/503")
    add("--token-ttl", type=int, default=defaults.token_ttl, help="OAuth access-token lifetime (s)")
    add("--mode", choices=("cloud", "datacenter"), default=defaults.mode)
    add("--oauth-client-id", default=defaults.oauth_client_id,
        help="OAuth 2.0 (3LO) client id (default %(default)s)")
    add("--oauth-client-secret", default=defaults.oauth_client_secret,
        help="OAuth 2.0 (3LO) client secret (default %(default)s)")
    add("--forbidden-projects", default="",
        help="comma-separated project keys the account cannot browse (403, hidden from lists)")
    add("--dc-user-search-cap", type=int, default=defaults.dc_user_search_cap,
        help="Data Center user search: most users per answer, whatever maxResults says "
             "(Jira DC 10 answers at most 100)")
    add("--dc-user-search-limit", type=int, default=defaults.dc_user_search_limit,
        help="Data Center user search: most matches listed in all (later pages are empty)")
    add("--paging", choices=("keyset", "offset"), default=defaults.paging,
        help="what Cloud nextPageTokens remember: the last sort key, or an offset (pages then "
        "shift when issues change during a walk)")
    add("--histories", default=None, metavar="LOW-HIGH",
        help="histories per issue, drawn from LOW..HIGH (e.g. 10-300); default: 0 to 3")
    add("--now", default=None,
        help="ISO-8601 start of the fake's clock (default: the wall clock); pins the dataset")
    add("--tls-cert", default=None, help="PEM certificate: serve HTTPS (with --tls-key)")
    add("--tls-key", default=None, help="PEM private key for --tls-cert")


def config_from_args(args: argparse.Namespace) -> FakeJiraConfig:
    """The FakeJiraConfig the flags describe; ValueError names the flag at fault."""
    now: datetime | None = None
    if args.now:
        try:
            now = parse_jira_datetime(args.now)
        except TimestampError:
            raise ValueError(f"--now: not an ISO-8601 timestamp: {args.now!r}") from None
    try:
        ZoneInfo(args.user_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--user-timezone: unknown time zone {args.user_timezone!r}") from None
    histories = _history_range(args.histories)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    return FakeJiraConfig(
        seed=args.seed, projects=args.projects, users=args.users, issues=args.issues,
        days=args.days, email=args.email, api_token=args.api_token, pat=args.pat,
        user_timezone=args.user_timezone, latency_ms=args.latency_ms, rate_limit=args.rate_limit,
        burst=args.burst, fault_rate=args.fault_rate, token_ttl=args.token_ttl, mode=args.mode,
        oauth_client_id=args.oauth_client_id, oauth_client_secret=args.oauth_client_secret,
        now=now, dc_user_search_cap=args.dc_user_search_cap,
        dc_user_search_limit=args.dc_user_search_limit, paging=args.paging, histories=histories,
        forbidden_projects=tuple(k.strip().upper() for k in args.forbidden_projects.split(",")
                                 if k.strip()),
    )


def _history_range(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    low, _, high = value.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ValueError(f"--histories: expected LOW-HIGH, got {value!r}") from None


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"jira-pipeline fake-jira: {error}", file=sys.stderr)
        return 2
    site = FakeJiraSite(config)
    try:
        sock = listening_socket(args.host, args.port)
    except FakeJiraStartError as error:
        print(f"jira-pipeline fake-jira: {error}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    scheme = "https" if args.tls_cert else "http"
    base = f"{scheme}://{args.host}:{port}"
    # The credentials are the fake's own demo values, printed so a client can be pointed at it.
    lines = [f"fake Jira ({config.mode}) serving {config.issues} issues at {base}"]
    if config.mode == "cloud":
        lines += [f"  JIRA_BASE_URL={base}", f"  JIRA_EMAIL={config.email}",
                  f"  JIRA_API_TOKEN={config.api_token}",
                  f"  OAuth: client id {config.oauth_client_id}, client secret "
                  f"{config.oauth_client_secret}, cloud id {site.cloud_id}, "
                  f"authorize at {base}/authorize"]
    else:
        lines += [f"  JIRA_BASE_URL={base}", f"  JIRA_PAT={config.pat}"]
    lines.append(f"  clock starts at {site.start.isoformat()}; admin endpoints under {base}/_fake/")
    print("\n".join(lines), flush=True)
    server = uvicorn.Server(uvicorn_config(site, tls_cert=args.tls_cert, tls_key=args.tls_key,
                                           log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
