"""Talking to MongoDB: client factory, indexes, upserts, IO manager, token encryption."""

from __future__ import annotations

import importlib
from typing import Any

# Public names -> defining module. Imported on first use, so that the CLI's connection commands
# do not pay for importing Dagster (which the IO manager and resource need).
_EXPORTS = {
    "get_mongo_client": "client",
    "get_database": "client",
    "is_embedded": "client",
    "mask_uri": "client",
    "StoreUnavailableError": "client",
    "EntitySpec": "entities",
    "ENTITIES": "entities",
    "entity_spec": "entities",
    "document_id": "entities",
    "ensure_indexes": "indexes",
    "upsert_records": "upserts",
    "mark_deleted_except": "upserts",
    "UpsertCounts": "upserts",
    "RecordError": "upserts",
    "MongoUpsertIOManager": "io_manager",
    "RecordStream": "io_manager",
    "MongoResource": "resources",
    "TokenCipher": "crypto",
    "TokenCipherError": "crypto",
    "TokenDecryptError": "crypto",
    "ConnectionRepository": "connections",
    "Connection": "connections",
    "StoredTokens": "connections",
    "StaleRefreshTokenError": "connections",
    "make_token_persister": "connections",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
