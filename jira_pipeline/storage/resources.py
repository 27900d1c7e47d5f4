"""`MongoResource`: the Dagster resource that hands assets, checks and sensors the database."""

from __future__ import annotations

import os
import threading

import dagster as dg
from pydantic import Field, PrivateAttr
from pymongo.database import Database

from jira_pipeline.storage.client import MongoClient, database_name, get_mongo_client
from jira_pipeline.storage.indexes import ensure_indexes


class MongoResource(dg.ConfigurableResource):
    """The jira_pipeline MongoDB database, on a server or in the embedded store.

    Leave `uri` unset to read `MONGODB_URI` when the resource is used (so the URI, which may hold
    a password, never appears in run config); with neither, the embedded store is used.
    """

    uri: str | None = Field(
        default=None, description="mongodb:// or mongodb+srv:// URI; default: MONGODB_URI"
    )
    database: str | None = Field(
        default=None, description="database name; default: MONGODB_DATABASE, else `jira`"
    )
    folder: str | None = Field(
        default=None,
        description="embedded store folder; default: $DAGSTER_HOME/mongo or ./.jira_pipeline/mongo",
    )

    # The embedded store's SQLite connections belong to the thread that opened them, so clients
    # are kept per process and thread.
    _clients: dict[tuple[int, int], MongoClient] = PrivateAttr(default_factory=dict)
    _guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def database_name(self) -> str:
        """The `database` field, else MONGODB_DATABASE, else `jira`; a ConfigurationError
        (naming MONGODB_DATABASE) if MongoDB would refuse it."""
        return database_name(self.database)

    def get_client(self) -> MongoClient:
        key = (os.getpid(), threading.get_ident())
        name = self.database_name()  # a bad name fails before any store is opened
        with self._guard:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = get_mongo_client(self.uri, folder=self.folder)
                ensure_indexes(client.get_database(name))
            return client

    def get_database(self) -> Database:
        """The database, its indexes ensured (once per client)."""
        return self.get_client().get_database(self.database_name())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def close(self) -> None:
        """Close this thread's clients; other threads' embedded clients close when collected."""
        here = (os.getpid(), threading.get_ident())
        with self._guard:
            clients, self._clients = self._clients, {}
        for owner, client in clients.items():
            if owner == here:
                client.close()
