"""The client factory: which store, where, and failing fast with a message that names the cause."""

from __future__ import annotations

import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest

from jira_pipeline.settings import ConfigurationError
from jira_pipeline.storage.client import (
    StoreUnavailableError,
    get_database,
    get_mongo_client,
    is_embedded,
    mask_uri,
)
from jira_pipeline.storage.entities import document_id
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline_tests.storage.conftest import Store, issue


@pytest.fixture(autouse=True)
def _no_ambient_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MONGODB_URI", "MONGODB_DATABASE", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_without_mongodb_uri_the_store_lives_under_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))

    db = get_database()
    db.jira_projects.insert_one({"connection_id": "c", "project_id": "1"})

    assert is_embedded(db)
    assert db.name == "jira"
    assert (tmp_path / "home" / "mongo" / "jira" / "jira_projects").is_file()


def test_without_dagster_home_the_store_lives_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGODB_DATABASE", "elsewhere")

    MongoResource().get_database().jira_users.insert_one({"account_id": "a"})

    assert (tmp_path / ".jira_pipeline" / "mongo" / "elsewhere" / "jira_users").is_file()


def test_a_dotenv_file_in_the_working_directory_configures_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(f"DAGSTER_HOME={tmp_path / 'from-dotenv'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MONGODB_URI", raising=False)

    get_database().jira_users.insert_one({"account_id": "a"})

    assert (tmp_path / "from-dotenv" / "mongo" / "jira" / "jira_users").is_file()


def test_an_unusable_folder_fails_at_once_naming_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(StoreUnavailableError, match=str(blocker / "mongo")):
        get_mongo_client(folder=blocker / "mongo")


def test_an_unreachable_server_fails_fast_naming_the_uri_with_its_password_masked() -> None:
    uri = "mongodb://reader:s3cr3t-pw@127.0.0.1:9/?directConnection=true"

    with pytest.raises(StoreUnavailableError) as raised:
        get_mongo_client(uri, server_selection_timeout_ms=300)

    message = str(raised.value)
    assert "mongodb://reader:***@127.0.0.1:9/" in message
    assert "s3cr3t-pw" not in message


def test_a_uri_that_is_not_mongodb_is_refused_naming_the_variable() -> None:
    with pytest.raises(StoreUnavailableError, match="MONGODB_URI must start with mongodb://"):
        get_mongo_client("postgres://user:pw@db/jira")


@pytest.mark.parametrize(
    "name",
    ["jira/prod", "jira\\prod", "jira.prod", "jira prod", 'jira"prod', "jira$prod", "j" * 64],
)
def test_a_database_name_mongodb_refuses_is_named_by_its_variable_before_any_store_opens(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_DATABASE", name)
    resource = MongoResource(folder=str(tmp_path / "store"))

    for open_database in (resource.get_database, lambda: get_database(folder=tmp_path / "store")):
        with pytest.raises(ConfigurationError) as raised:
            open_database()
        assert raised.value.variable == "MONGODB_DATABASE"
        assert str(raised.value).startswith("MONGODB_DATABASE")
        assert repr(name) in str(raised.value)
    assert not (tmp_path / "store").exists()


def test_a_database_named_in_code_is_checked_like_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^MONGODB_DATABASE must not be empty"):
        MongoResource(folder=str(tmp_path), database="").get_database()
    with pytest.raises(ConfigurationError, match=r"^MONGODB_DATABASE"):
        get_database(database="a.b", folder=tmp_path)


def test_a_sixty_three_byte_database_name_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_DATABASE", "j" * 63)

    db = MongoResource(folder=str(tmp_path)).get_database()
    db.jira_projects.insert_one({"connection_id": "c", "project_id": "1"})

    assert db.name == "j" * 63 and db.jira_projects.count_documents({}) == 1


def test_masking_leaves_uris_without_a_password_alone() -> None:
    assert mask_uri("mongodb://db1,db2/?replicaSet=rs") == "mongodb://db1,db2/?replicaSet=rs"
    assert mask_uri("mongodb+srv://u:p%40ss@cluster.example.net/x") == (
        "mongodb+srv://u:***@cluster.example.net/x"
    )


def test_ids_are_standard_uuids_and_round_trip(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])

    stored = store.db.jira_issues.find_one({"issue_id": "1"})

    assert isinstance(stored["_id"], uuid.UUID)
    assert stored["_id"] == document_id("conn-1", "issues", "1")
    assert store.db.jira_issues.find_one({"_id": stored["_id"]})["issue_id"] == "1"


# --- the embedded store's cross-process write lock ---------------------------------------------


def _write_one(folder: str, database: str, opened: Any, go: Any, done: Any) -> None:
    db = get_mongo_client(folder=folder).get_database(database)
    db.jira_issues  # noqa: B018 - opening the collection takes its lock too: not the write under test
    opened.set()
    go.wait()
    upsert_records(db, "issues", [issue(1)])
    done.set()


def _waiting_for_flock(pid: int, path: Path) -> bool:
    """True when the kernel lists process `pid` as queued for a flock on `path`.

    /proc/locks shows a blocked request as `N: -> FLOCK ADVISORY WRITE <pid> <dev>:<inode> ...`.
    """
    inode = str(path.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields:
            continue
        request = fields[fields.index("->") + 1 :]
        if request[0] == "FLOCK" and request[3] == str(pid) and request[4].endswith(f":{inode}"):
            return True
    return False


@pytest.mark.skipif(
    not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks to see a queued lock"
)
def test_an_embedded_write_waits_while_another_process_holds_the_collection(tmp_path: Path) -> None:
    db = get_mongo_client(folder=tmp_path).get_database("jira")
    lock_file = tmp_path / "jira.jira_issues.lock"
    context = multiprocessing.get_context("spawn")
    opened, go, done = context.Event(), context.Event(), context.Event()
    writer = context.Process(target=_write_one, args=(str(tmp_path), "jira", opened, go, done))
    writer.start()
    assert opened.wait(timeout=120), "the writer process did not start"
    assert writer.pid is not None

    with db.jira_issues.write_lock.held():
        go.set()
        # Evidence from the kernel, not from elapsed time: however slow the machine, the test
        # goes on only once the writer is queued on this lock, or has written (a broken lock).
        while not (_waiting_for_flock(writer.pid, lock_file) or done.is_set()):
            assert writer.is_alive(), f"the writer exited with {writer.exitcode}"
            done.wait(timeout=0.01)
        wrote_while_held = done.is_set()
        stored_while_held = db.jira_issues.estimated_document_count()
    finished = done.wait(timeout=120)
    writer.join(timeout=120)

    assert not wrote_while_held and stored_while_held == 0
    assert finished and writer.exitcode == 0
    assert db.jira_issues.estimated_document_count() == 1
