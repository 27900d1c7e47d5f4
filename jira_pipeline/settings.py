"""Configuration shared by every entry point: read `.env` from the working directory once."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from dotenv import load_dotenv


@cache
def load_dotenv_once() -> bool:
    """Load `./.env` into the environment (real environment variables win); True if one was read.

    Cached so that every place that reads configuration can call it without re-reading the file.
    """
    path = Path.cwd() / ".env"
    if not path.is_file():
        return False
    return load_dotenv(path, override=False)


def env(name: str, default: str | None = None) -> str | None:
    """An environment variable after `.env` is loaded; blank values count as unset."""
    load_dotenv_once()
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()
