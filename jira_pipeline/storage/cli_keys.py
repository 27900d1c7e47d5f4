"""`jira-pipeline keys generate|rotate`: create Fernet keys and re-encrypt stored tokens."""

from __future__ import annotations

import argparse
import sys

from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.client import StoreUnavailableError, get_database
from jira_pipeline.storage.connections import ConnectionRepository
from jira_pipeline.storage.crypto import FERNET_KEYS_VARIABLE, TokenCipher, TokenCipherError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help="database name (default: MONGODB_DATABASE or jira)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("generate", help="print a new key")
    actions.add_parser(
        "rotate", help=f"re-encrypt every stored token with the first key in {FERNET_KEYS_VARIABLE}"
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "generate":
        print(TokenCipher.generate_key())
        print(
            f"# to rotate: put it first, keep the old keys after it, then run "
            f"`jira-pipeline keys rotate`:\n"
            f'#   {FERNET_KEYS_VARIABLE}="<new key>,${FERNET_KEYS_VARIABLE}"',
            file=sys.stderr,
        )
        return 0
    try:
        cipher = TokenCipher.from_env()
        repository = ConnectionRepository(get_database(database=args.database), cipher)
        rotated = repository.rotate_keys()
    except (StoreUnavailableError, TokenCipherError, ConfigurationError) as error:
        print(f"jira-pipeline keys: {error}", file=sys.stderr)
        return 1
    print(f"re-encrypted {rotated} token(s) with the newest key")
    if cipher.key_count > 1:
        print(
            f"older keys in {FERNET_KEYS_VARIABLE} are no longer needed by stored tokens and "
            "can be removed"
        )
    return 0
