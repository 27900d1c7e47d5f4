"""`jira-pipeline connections add|list|remove`: the Jira sites stored in `jira_connections`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jira_pipeline.settings import load_settings
from jira_pipeline.storage.client import StoreUnavailableError, get_database
from jira_pipeline.storage.connections import AUTH_TYPES, Connection, ConnectionRepository
from jira_pipeline.storage.connections import JiraConnectionError as RepositoryError
from jira_pipeline.storage.crypto import TokenCipherError
from jira_pipeline.timeutil import parse_jira_datetime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database name (default: MONGODB_DATABASE or jira)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="store a connection (tokens encrypted)")
    add.add_argument("name", help="a short name, used as the asset-key prefix")
    add.add_argument("--site-url", required=True, help="e.g. https://acme.atlassian.net")
    add.add_argument("--auth-type", choices=AUTH_TYPES, default="oauth")
    add.add_argument("--cloud-id", help="Jira Cloud id (OAuth)")
    add.add_argument("--email", help="the account's email (api_token connections)")
    # Tokens never go on the command line (shell history, `ps`): name a variable or be prompted.
    add.add_argument(
        "--access-token-env", metavar="VAR", help="read the access token / API token / PAT from VAR"
    )
    add.add_argument("--refresh-token-env", metavar="VAR", help="read the refresh token from VAR")
    add.add_argument("--expires-at", help="access-token expiry, ISO 8601 (OAuth)")
    add.add_argument(
        "--prompt", action="store_true", help="prompt for the tokens (input is not echoed)"
    )
    add.add_argument(
        "--authorize",
        action="store_true",
        help="OAuth 2.0 (3LO): open Atlassian's consent page, then store the granted tokens "
        "(needs JIRA_OAUTH_CLIENT_ID and JIRA_OAUTH_CLIENT_SECRET)",
    )
    add.add_argument(
        "--redirect-uri",
        default="http://localhost:8080/callback",
        help="the callback URL registered for your OAuth app (default: %(default)s)",
    )
    add.add_argument(
        "--oauth-origin",
        help="serve the OAuth endpoints from this origin instead of Atlassian's (the fake Jira)",
    )

    listing = actions.add_parser("list", help="list connections (never shows tokens)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    remove = actions.add_parser("remove", help="delete a connection and its tokens")
    remove.add_argument("connection", help="id or name")


def run(args: argparse.Namespace) -> int:
    try:
        repository = ConnectionRepository(get_database(database=args.database))
        if args.action == "add":
            return _add(repository, args)
        if args.action == "list":
            return _list(repository, as_json=args.json)
        removed = repository.remove(args.connection)
        print(f"removed connection {removed.name} ({removed.id})")
        return 0
    except (StoreUnavailableError, RepositoryError, TokenCipherError, ValueError) as error:
        print(f"jira-pipeline connections: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        from jira_pipeline.jira import JiraError

        # The Jira client's errors (refused grant, unreachable site) are scrubbed of secrets;
        # anything else is a bug and keeps its traceback.
        if not isinstance(error, JiraError):
            raise
        print(f"jira-pipeline connections: {error}", file=sys.stderr)
        return 1


def _add(repository: ConnectionRepository, args: argparse.Namespace) -> int:
    if args.authorize:
        return _authorize(repository, args)
    access = _secret_from(args.access_token_env, "access token", args.prompt)
    refresh = _secret_from(args.refresh_token_env, "refresh token", args.prompt)
    connection = repository.add(
        args.name,
        args.site_url,
        auth_type=args.auth_type,
        cloud_id=args.cloud_id,
        email=args.email,
        access_token=access,
        refresh_token=refresh,
        token_expires_at=parse_jira_datetime(args.expires_at) if args.expires_at else None,
    )
    print(f"added connection {connection.name} ({connection.id})")
    return 0


def _secret_from(variable: str | None, what: str, prompt: bool) -> str | None:
    if variable:
        value = os.environ.get(variable)
        if not value:
            raise ValueError(f"{variable} is not set (it should hold the {what})")
        return value
    if prompt:
        return getpass.getpass(f"{what} (leave empty for none): ") or None
    return None


def _list(repository: ConnectionRepository, *, as_json: bool) -> int:
    connections = repository.list()
    if as_json:
        for connection in connections:
            print(json.dumps(_row(connection)))
        return 0
    if not connections:
        print("no connections (add one with `jira-pipeline connections add`)")
        return 0
    rows = [_row(connection) for connection in connections]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    print("  ".join(column.ljust(widths[column]) for column in columns))
    for row in rows:
        print("  ".join(str(row[column]).ljust(widths[column]) for column in columns))
    return 0


def _row(connection: Connection) -> dict[str, str]:
    expires = connection.token_expires_at
    return {
        "id": connection.id,
        "name": connection.name,
        "site_url": connection.site_url,
        "auth_type": connection.auth_type,
        "cloud_id": connection.cloud_id or "",
        "tokens": "stored" if connection.has_tokens else "none",
        "token_expires_at": expires.isoformat() if expires else "",
    }


def _authorize(repository: ConnectionRepository, args: argparse.Namespace) -> int:
    """The authorization-code grant, run by hand: the user consents in a browser and pastes back
    the URL they were redirected to; the tokens never pass through the command line."""
    # Imported here: only this command needs the Jira client.
    from jira_pipeline.jira import OAuth3LO, OAuthEndpoints

    settings = load_settings()
    client_id, client_secret = settings.oauth_client_id, settings.oauth_client_secret
    if not client_id or not client_secret:
        raise ValueError("--authorize needs JIRA_OAUTH_CLIENT_ID and JIRA_OAUTH_CLIENT_SECRET set")
    repository.cipher  # noqa: B018 - fail on missing keys before the user consents
    origin = args.oauth_origin
    endpoints = OAuthEndpoints.at_origin(origin) if origin else OAuthEndpoints()
    oauth = OAuth3LO(client_id=client_id, client_secret=client_secret, endpoints=endpoints,
                     cloud_id=args.cloud_id)  # fmt: skip
    state = secrets.token_urlsafe(16)
    answer = input(
        f"Open this URL, consent, then paste the URL you were sent to:\n"
        f"{oauth.authorize_url(state, args.redirect_uri)}\n> "
    ).strip()
    query = parse_qs(urlsplit(answer).query) if "?" in answer else {"code": [answer]}
    if "state" in query and query["state"] != [state]:
        raise ValueError("the pasted URL belongs to another authorization (state mismatch)")
    code = (query.get("code") or [""])[0]
    if not code:
        raise ValueError("no authorization code in what was pasted")

    async def grant() -> tuple[Any, str]:
        tokens = await oauth.exchange_code(code, args.redirect_uri)
        return tokens, await oauth.discover_cloud_id()

    tokens, cloud_id = asyncio.run(grant())
    connection = repository.add(
        args.name,
        args.site_url,
        auth_type="oauth",
        cloud_id=cloud_id,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_expires_at=tokens.expires_at,
    )
    print(f"added connection {connection.name} ({connection.id}), cloud id {cloud_id}")
    return 0
