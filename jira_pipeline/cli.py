"""The `jira-pipeline` command: one entry point whose subcommands live beside what they drive."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand name -> module exposing `add_arguments(parser)` and `run(args) -> int`.
# Modules are imported only for the command being run, so `jira-pipeline fake-jira` does not pay
# for importing Dagster.
COMMANDS: dict[str, tuple[str, str]] = {
    "fake-jira": ("jira_pipeline.fakejira.cli", "serve a local Jira Cloud stand-in over HTTP"),
    "connections": ("jira_pipeline.storage.cli_connections", "add, list or remove connections"),
    "keys": ("jira_pipeline.storage.cli_keys", "generate or rotate Fernet token-encryption keys"),
    "demo": ("jira_pipeline.demo", "sync a fake Jira into an embedded store through Dagster"),
    "dev": ("jira_pipeline.demo_dev", "start `dg dev` (optionally against the demo fake)"),
    "where": ("jira_pipeline.where", "say where the MongoDB store is and how to query it"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="jira-pipeline", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        # Unknown command or --help: let argparse print usage (and exit 2 on an unknown one).
        parser.parse_args(argv or ["--help"])
        return 2
    command, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[command][0])
    sub = argparse.ArgumentParser(prog=f"jira-pipeline {command}", description=COMMANDS[command][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
