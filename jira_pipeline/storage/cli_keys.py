"""`jira-pipeline keys generate|rotate`: create Fernet keys and re-encrypt stored tokens."""

from __future__ import annotations

import argparse
import sys

from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.client import StoreUnavailableError, get_database
from jira_pipeline.storage.connections import ConnectionRepository, KeyRotation
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
        rotation = repository.rotate_keys()
    except (StoreUnavailableError, TokenCipherError, ConfigurationError) as error:
        print(f"jira-pipeline keys: {error}", file=sys.stderr)
        return 1
    for line in rotation_report(rotation, cipher.key_count):
        print(line)
    if rotation.old_keys_needed:
        for line in rotation_warnings(rotation):
            print(f"jira-pipeline keys: {line}", file=sys.stderr)
        return 1
    return 0


def rotation_report(rotation: KeyRotation, key_count: int) -> list[str]:
    """What a rotation did, and (only when every token is under the newest key) that older keys
    may go."""
    retried = f" ({rotation.retried} write(s) retried: a token changed under them)"
    lines = [
        f"re-encrypted {rotation.re_encrypted} token(s) with the newest key"
        + (retried if rotation.retried else ""),
        f"{rotation.current} of {rotation.with_tokens} connection(s) holding tokens are under "
        "the newest key",
    ]
    if key_count > 1 and not rotation.old_keys_needed:
        lines.append(
            f"older keys in {FERNET_KEYS_VARIABLE} are no longer needed by stored tokens and can "
            "be removed once every process that saves tokens runs with the newest key first"
        )
    return lines


def rotation_warnings(rotation: KeyRotation) -> list[str]:
    lines = []
    if rotation.behind:
        lines.append(
            f"{len(rotation.behind)} connection(s) still hold a token under an older key "
            f"({', '.join(rotation.behind)}): a process without the newest key keeps saving "
            f"under an old one; keep the older keys in {FERNET_KEYS_VARIABLE}, give every "
            "process the new key list, and run `jira-pipeline keys rotate` again"
        )
    if rotation.unreadable:
        lines.append(
            f"{len(rotation.unreadable)} connection(s) hold a token no key in "
            f"{FERNET_KEYS_VARIABLE} decrypts ({', '.join(rotation.unreadable)}): re-authorize "
            "them or restore the key that encrypted them"
        )
    lines.append(f"do not remove any key from {FERNET_KEYS_VARIABLE} yet")
    return lines
