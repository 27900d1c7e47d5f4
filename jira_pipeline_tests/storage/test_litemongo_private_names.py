"""litemongo's private names the embedded store builds on: a release that drops one fails here,
naming it, instead of somewhere deep in a sync (or silently, when an override stops being called).

litemongo is pinned exactly in pyproject.toml; before moving the pin, run this file against the
new release. The lists below are every litemongo name `jira_pipeline/storage/` uses that is not
part of the pymongo API.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jira_pipeline.storage import client as storage_client
from jira_pipeline.storage import embedded_index

LITEMONGO_VERSION = importlib.metadata.version("litemongo")
COLLECTION = "litemongo._vendor.mongomock.collection"
DATABASE = "litemongo._vendor.mongomock.database"
HELPERS = "litemongo._vendor.mongomock.helpers"
FILTERING = "litemongo._vendor.mongomock.filtering"
INDEXING = "litemongo._vendor.mongomock.indexing"
SQLITE_STORE = "litemongo.sqlite_store"

# (module, dotted attribute, where the embedded store uses it): present on the module or class.
MODULE_NAMES: list[tuple[str, str, str]] = [
    ("litemongo", "MongoClient", "client.EmbeddedMongoClient's base"),
    (COLLECTION, "Collection", "client.EmbeddedCollection's base"),
    *(
        (COLLECTION, f"Collection.{name}", "client.EmbeddedCollection wraps it in the write lock")
        for name in (
            "insert_one", "insert_many", "update_one", "update_many", "replace_one",
            "delete_one", "delete_many", "bulk_write", "find_one_and_update",
            "find_one_and_replace", "find_one_and_delete", "create_index", "create_indexes",
            "drop_index", "drop",
        )
    ),
    (COLLECTION, "Collection._iter_documents", "client.EmbeddedCollection overrides it"),
    (COLLECTION, "Collection._get_dataset", "client.EmbeddedCollection overrides it"),
    (COLLECTION, "Collection._ensure_uniques", "client.EmbeddedCollection overrides it"),
    (COLLECTION, "Collection._insert", "client.EmbeddedCollection overrides it"),
    (COLLECTION, "_copy_field", "client._projected (mongomock's copy of a projected value)"),
    (COLLECTION, "Collection._update", "client.EmbeddedCollection overrides it"),
    (COLLECTION, "Collection._copy_only_fields", "client.EmbeddedCollection._get_dataset"),
    (COLLECTION, "Collection._store", "client.EmbeddedCollection (its collection store)"),
    (COLLECTION, "Cursor", "client.EmbeddedCursor's base"),
    *(
        (COLLECTION, f"Cursor.{name}", "client.EmbeddedCursor overrides or calls it")
        for name in ("__next__", "rewind", "clone", "close", "alive", "_compute_results")
    ),
    (HELPERS, "make_datetime_timezone_aware_in_document", "client.EmbeddedCursor's stream"),
    (DATABASE, "Database", "client.EmbeddedDatabase's base"),
    (DATABASE, "Database._ensure_valid_collection_name", "client.EmbeddedDatabase"),
    (HELPERS, "get_value_by_dot", "client.EmbeddedCollection._ensure_uniques"),
    (HELPERS, "patch_datetime_awareness_in_document", "client.EmbeddedCollection.count_documents"),
    (FILTERING, "filter_applies", "matching in client.py and embedded_index.py"),
    (INDEXING, "ID", "embedded_index plans"),
    (INDEXING, "_doc_keys", "embedded_index.document_key_texts (litemongo's keying rules)"),
    (INDEXING, "_key_for", "embedded_index._datetime_bounds"),
    (INDEXING, "query_keys", "embedded_index plans"),
    (INDEXING, "index_paths", "embedded_index._index_declared_paths"),
    (SQLITE_STORE, "KEY_FORMAT_TYPED", "embedded_index._id_source"),
    (SQLITE_STORE, "CollectionStore", "embedded_index.IndexedCollectionStore's base"),
    *(
        (SQLITE_STORE, f"CollectionStore.{name}", "embedded_index.IndexedCollectionStore")
        for name in (
            "open", "DOCUMENTS", "indexes", "is_empty", "drop", "copy_from", "__setitem__",
            "__delitem__", "_remove_expired_documents",
        )
    ),
    (SQLITE_STORE, "TableDict", "embedded_index.DocumentTable's base"),
    *(
        (SQLITE_STORE, f"TableDict.{name}", "embedded_index.DocumentTable")
        for name in ("ID", "DOC", "items", "encode_key", "_decode_doc", "_encode_doc")
    ),
    (SQLITE_STORE, "DatabaseStore", "embedded_index.IndexedDatabaseStore's base"),
    (SQLITE_STORE, "ServerStore", "embedded_index.IndexedServerStore's base"),
]

# Attributes that exist only on live objects (set in litemongo's constructors or `open`).
INSTANCE_NAMES: list[tuple[str, str]] = [
    ("client", "_database_accesses"),
    ("client", "_store"),
    ("client", "_codec_options"),
    ("database", "_collection_accesses"),
    ("database", "_store"),
    ("database", "_codec_options"),
    ("collection_store", "_connection"),
    ("collection_store", "_cur"),
    ("collection_store", "_codec_options"),
    ("collection_store", "_documents"),
    ("collection_store", "_rwlock"),
    ("collection_store", "_rwlock.writer"),
    ("document_table", "_table_name"),
    ("document_table", "_cur"),
    ("document_table", "key_format"),
    *(
        ("cursor", name)
        for name in ("_factory", "_factory_last_generated_results", "_results", "_emitted",
                     "_skip", "_limit", "collection")
    ),
    ("database_store", "_collections"),
    ("database_store", "_dirpath"),
    ("database_store", "_codec_options"),
    ("server_store", "_databases"),
    ("server_store", "_dirpath"),
]

# Signatures the embedded store calls with keywords or overrides: parameter names must stay.
SIGNATURES: list[tuple[str, str, list[str]]] = [
    (COLLECTION, "Collection.__init__", ["database", "name", "_db_store", "read_preference",
                                          "codec_options"]),
    (COLLECTION, "Collection._get_dataset", ["spec", "sort", "fields", "as_class"]),
    (COLLECTION, "Collection._iter_documents", ["filter"]),
    (COLLECTION, "Collection._ensure_uniques", ["new_data"]),
    (DATABASE, "Database.__init__", ["client", "name", "_store", "read_preference",
                                      "codec_options", "read_concern"]),
    (SQLITE_STORE, "TableDict.__init__", ["table_name", "connection", "codec_options",
                                           "key_format"]),
    (SQLITE_STORE, "CollectionStore.__init__", ["filename", "codec_options"]),
    (SQLITE_STORE, "DatabaseStore.__init__", ["path", "codec_options"]),
    ("litemongo", "MongoClient.__init__", ["store", "tz_aware"]),
]  # fmt: skip


def _resolve(target: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def _missing(where: str, dotted: str) -> str:
    return (
        f"litemongo {LITEMONGO_VERSION} has no {dotted} any more ({where} relies on it): adapt "
        "jira_pipeline/storage/ before moving the pin in pyproject.toml"
    )


@pytest.mark.parametrize(
    ("module", "dotted", "where"),
    MODULE_NAMES,
    ids=[f"{module}.{dotted}" for module, dotted, _ in MODULE_NAMES],
)
def test_litemongo_still_has_the_private_name(module: str, dotted: str, where: str) -> None:
    try:
        imported = importlib.import_module(module)
    except ImportError:
        pytest.fail(_missing(where, f"module {module}"), pytrace=False)
    try:
        _resolve(imported, dotted)
    except AttributeError:
        pytest.fail(_missing(where, f"{module}.{dotted}"), pytrace=False)


@pytest.fixture(scope="module")
def live_objects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One embedded store with a written collection: litemongo's objects as the store uses them."""
    client = storage_client.get_mongo_client(None, folder=tmp_path_factory.mktemp("mongo"))
    database = client.get_database("jira")
    database.jira_issues.insert_one({"issue_id": "1"})
    collection_store = database.jira_issues._store
    yield {
        "client": client,
        "database": database,
        "collection_store": collection_store,
        "document_table": collection_store._documents,
        "cursor": database.jira_issues.find(),
        "database_store": client._store["jira"],
        "server_store": client._store,
    }
    client.close()


@pytest.mark.parametrize(
    ("owner", "dotted"), INSTANCE_NAMES, ids=[f"{o}.{d}" for o, d in INSTANCE_NAMES]
)
def test_litemongo_objects_still_carry_the_private_attribute(
    live_objects: dict[str, Any], owner: str, dotted: str
) -> None:
    target = live_objects[owner]
    try:
        _resolve(target, dotted)
    except AttributeError:
        pytest.fail(_missing("the embedded store", f"{type(target).__name__}.{dotted}"), False)


@pytest.mark.parametrize(
    ("module", "dotted", "parameters"), SIGNATURES, ids=[f"{m}.{d}" for m, d, _ in SIGNATURES]
)
def test_litemongo_keeps_the_parameters_the_store_passes_or_overrides(
    module: str, dotted: str, parameters: list[str]
) -> None:
    function = _resolve(importlib.import_module(module), dotted)
    present = set(inspect.signature(function).parameters)
    lost = [name for name in parameters if name not in present]
    assert not lost, _missing("the embedded store", f"parameter(s) {lost} of {module}.{dotted}")


def test_the_installed_litemongo_is_the_pinned_one() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    pinned = f'"litemongo=={LITEMONGO_VERSION}"'
    assert pinned in pyproject.read_text(), (
        f"litemongo {LITEMONGO_VERSION} is installed but pyproject.toml pins another version: "
        "the private names above are checked against what is installed"
    )


def test_the_embedded_store_is_built_on_the_checked_classes() -> None:
    # If the store stopped subclassing these, the checks above would guard nothing.
    sqlite_store = importlib.import_module(SQLITE_STORE)
    collection = importlib.import_module(COLLECTION)
    database = importlib.import_module(DATABASE)

    assert issubclass(storage_client.EmbeddedCollection, collection.Collection)
    assert issubclass(storage_client.EmbeddedDatabase, database.Database)
    assert issubclass(embedded_index.IndexedCollectionStore, sqlite_store.CollectionStore)
    assert issubclass(embedded_index.DocumentTable, sqlite_store.TableDict)
