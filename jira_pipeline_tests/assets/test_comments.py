"""`jira_issue_comments`: every comment of the synced issues, from the embedded block or the
paged thread, over HTTP from the fake Jira; comments Jira no longer lists are marked deleted,
only on complete listings; `comments_complete` catches what is missing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

import httpx
import pytest
from pymongo.database import Database

from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json


def jira_threads(pipeline: Pipeline, client: httpx.Client | None = None,
                 api: str = "3") -> dict[str, list[dict]]:
    """Every live issue's whole comment thread from the fake, by issue id."""
    own = client is None
    client = client or basic_client(pipeline.fake)
    try:
        threads: dict[str, list[dict]] = {}
        for issue_id in pipeline.fake_issues():
            comments: list[dict] = []
            while True:
                page = ok_json(client.get(f"/rest/api/{api}/issue/{issue_id}/comment",
                                          params={"startAt": len(comments)}))
                comments.extend(page["comments"])
                if len(comments) >= page["total"]:
                    break
            threads[issue_id] = comments
        return threads
    finally:
        if own:
            client.close()


def stored_threads(pipeline: Pipeline, *, deleted: bool = False) -> dict[str, dict[str, dict]]:
    """Stored comment documents by issue id and comment id (live ones, or the deleted)."""
    threads: dict[str, dict[str, dict]] = defaultdict(dict)
    for doc in pipeline.db["jira_issue_comments"].find({"is_deleted": deleted}):
        threads[doc["issue_id"]][doc["comment_id"]] = doc
    return threads


def without_sync_times(threads: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    return {i: {c: {k: v for k, v in doc.items() if k != "synced_at"} for c, doc in t.items()}
            for i, t in threads.items()}


def heavy_and_light(pipeline: Pipeline) -> tuple[dict, dict]:
    """An issue whose embedded block is truncated, and one with a complete block of two or more."""
    issues = pipeline.stored_issues()
    blocks = {i: d["raw"]["fields"]["comment"] for i, d in sorted(issues.items())}
    heavy = next(issues[i] for i, b in blocks.items() if b["total"] > b["maxResults"])
    light = next(issues[i] for i, b in blocks.items() if 2 <= b["total"] <= b["maxResults"])
    return heavy, light


def comments_complete(result: Any) -> Any:
    return check_results(result)[("jira_issue_comments", "comments_complete")]


def test_every_comment_is_stored_from_its_block_or_its_paged_thread(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=5)

    result = pipeline.sync_everything()

    assert result.success
    expected = jira_threads(pipeline)
    stored = stored_threads(pipeline)
    assert {i: {c["id"] for c in t} for i, t in expected.items() if t} == {
        i: set(t) for i, t in stored.items()
    }
    issues = pipeline.stored_issues()
    blocks = {i: d["raw"]["fields"]["comment"] for i, d in issues.items()}
    truncated = [i for i, block in blocks.items() if block["total"] > block["maxResults"]]
    assert truncated, "the seed gave no issue more comments than its block shows"
    for issue_id, thread in expected.items():
        for comment in thread:
            doc = stored[issue_id][comment["id"]]
            assert doc["body"] == comment["body"] and doc["raw"] == comment
            assert doc["body_text"] == comment["body"]["content"][0]["content"][0]["text"]
            assert doc["author_account_id"] == comment["author"]["accountId"]
            assert doc["issue_key"] == issues[issue_id]["key"]
            assert doc["created"].tzinfo is not None and doc["updated"] >= doc["created"]
            assert doc["visibility"] == comment.get("visibility")
    assert any(doc["visibility"] for t in stored.values() for doc in t.values())
    [meta] = materializations(result, "jira_issue_comments")[-1:]
    assert meta["threads_fetched"] == len(truncated)
    assert meta["comment_requests"] == len(truncated)  # under 100 comments: one page each
    assert meta["threads_from_embedded_block"] == len(issues) - len(truncated)
    assert meta["records_fetched"] == sum(len(t) for t in expected.values())
    assert comments_complete(result).passed
    assert comments_complete(result).metadata["issues_sampled"].value == 20


def test_deleted_edited_and_added_comments_follow_the_issue_delta(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=5)
    pipeline.sync_everything()
    heavy, light = heavy_and_light(pipeline)
    admin = pipeline.fake.admin
    light_block = light["raw"]["fields"]["comment"]["comments"]
    heavy_block = heavy["raw"]["fields"]["comment"]["comments"]
    admin.delete_comment(light["key"], light_block[0]["id"])
    admin.edit_comment(light["key"], light_block[1]["id"], "Edited after review.")
    admin.delete_comment(heavy["key"], heavy_block[3]["id"])
    added = admin.add_comment(heavy["key"], "A late remark.")

    delta = pipeline.run("jira_issues_job", pipeline.today)

    assert delta.success
    stored, gone = stored_threads(pipeline), stored_threads(pipeline, deleted=True)
    assert set(gone) == {light["issue_id"], heavy["issue_id"]}
    assert set(gone[light["issue_id"]]) == {light_block[0]["id"]}
    assert set(gone[heavy["issue_id"]]) == {heavy_block[3]["id"]}
    assert gone[light["issue_id"]][light_block[0]["id"]]["deleted_at"] is not None
    assert stored[light["issue_id"]][light_block[1]["id"]]["body_text"] == "Edited after review."
    assert stored[heavy["issue_id"]][added["id"]]["body_text"] == "A late remark."
    expected = jira_threads(pipeline)
    assert {i: set(t) for i, t in stored.items()} == {
        i: {c["id"] for c in t} for i, t in expected.items() if t}
    [meta] = materializations(delta, "jira_issue_comments")
    assert meta["marked_deleted"] == 2
    assert comments_complete(delta).passed

    again = pipeline.run("jira_issues_job", pipeline.today)

    [rerun] = materializations(again, "jira_issue_comments")
    assert rerun["marked_deleted"] == 0 and rerun["inserted"] == 0 and rerun["updated"] == 0
    assert without_sync_times(stored_threads(pipeline)) == without_sync_times(stored)


def test_a_short_comment_page_is_read_again_and_never_proves_a_comment_gone(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=5)
    pipeline.sync_everything()
    heavy, _ = heavy_and_light(pipeline)
    block = heavy["raw"]["fields"]["comment"]["comments"]
    admin = pipeline.fake.admin

    # One short page: the thread is read again, complete, and the deletion is seen.
    admin.delete_comment(heavy["key"], block[0]["id"])
    admin.shorten_comment_pages(1)
    retried = pipeline.run("jira_issues_job", pipeline.today)
    assert set(stored_threads(pipeline, deleted=True)[heavy["issue_id"]]) == {block[0]["id"]}
    [meta] = materializations(retried, "jira_issue_comments")
    # The short page and the one after it, then the thread once more: two requests more.
    assert meta["listings_incomplete"] == 0
    assert meta["comment_requests"] == meta["threads_fetched"] + 2
    assert comments_complete(retried).passed

    # Every page short: the listing stays incomplete, nothing is marked deleted, the check fails.
    admin.delete_comment(heavy["key"], block[1]["id"])
    admin.shorten_comment_pages(1000)
    short = pipeline.run("jira_issues_job", pipeline.today)
    admin.shorten_comment_pages(0)
    assert short.success
    assert set(stored_threads(pipeline, deleted=True)[heavy["issue_id"]]) == {block[0]["id"]}
    assert block[1]["id"] in stored_threads(pipeline)[heavy["issue_id"]]
    [meta] = materializations(short, "jira_issue_comments")
    assert meta["listings_incomplete"] == meta["threads_fetched"] > 0
    assert meta["marked_deleted"] == 0
    check = comments_complete(short)
    assert not check.passed
    assert f"{heavy['key']}: stored " in check.metadata["mismatched_sample"].value

    healed = pipeline.run("jira_issues_job", pipeline.today)
    assert comments_complete(healed).passed
    assert block[1]["id"] in stored_threads(pipeline, deleted=True)[heavy["issue_id"]]


@pytest.mark.parametrize(("change", "reported"), [
    ("delete", ": stored "), ("edit", ": 1 edited and 0 unknown comment(s) since stored"),
    ("add", ": stored "),
])
def test_a_comment_changed_in_jira_without_a_rerun_fails_the_check(
    pipeline_factory: Callable[..., Pipeline], change: str, reported: str,
) -> None:
    pipeline = pipeline_factory(issues=200, days=5)
    pipeline.sync_everything()
    # The issue with the most comments: the check's sample always holds it.
    busiest = max(pipeline.stored_issues().values(),
                  key=lambda doc: doc["raw"]["fields"]["comment"]["total"])
    first = busiest["raw"]["fields"]["comment"]["comments"][0]["id"]
    admin = pipeline.fake.admin
    admin.advance_clock(60)
    if change == "delete":
        admin.delete_comment(busiest["key"], first)
    elif change == "edit":
        admin.edit_comment(busiest["key"], first, "Edited behind the pipeline's back.")
    else:
        admin.add_comment(busiest["key"], "A new remark.")
    keys = pipeline.partition_keys()
    defs = pipeline.defs
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={next(
            key for key in defs.resolve_asset_graph().asset_check_keys
            if key.name == "comments_complete")},
        asset_selection=set(),
    )

    checked = job.execute_in_process(instance=pipeline.instance, tags={
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1]})

    check = comments_complete(checked)
    assert not check.passed
    assert f"{busiest['key']}{reported}" in check.metadata["mismatched_sample"].value


def test_data_center_threads_are_paged_from_rest_api_2_as_plain_text(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=200, days=5, mode="datacenter", pat="demo-pat")

    result = pipeline.sync_everything()

    assert result.success
    requests = pipeline.fake.admin.stats()["requests"]
    headers = {"Authorization": "Bearer demo-pat"}
    with httpx.Client(base_url=pipeline.fake.base_url, headers=headers) as client:
        expected = jira_threads(pipeline, client, api="2")
    stored = stored_threads(pipeline)
    assert {i: {c["id"] for c in t} for i, t in expected.items() if t} == {
        i: set(t) for i, t in stored.items()}
    docs = [doc for t in stored.values() for doc in t.values()]
    assert all(isinstance(d["body"], str) and d["body_text"] == d["body"] for d in docs)
    [meta] = materializations(result, "jira_issue_comments")[-1:]
    assert meta["threads_fetched"] > 0
    assert requests["GET /rest/api/2/issue/{key}/comment"]["200"] == (
        meta["comment_requests"] + comments_complete(result).metadata["api_calls"].value)
    assert comments_complete(result).passed


def test_the_comments_of_an_issue_the_census_proves_deleted_are_marked_deleted(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=60, days=3)
    assert pipeline.sync_everything().success
    kept = stored_threads(pipeline)
    issue_id = next(i for i, thread in sorted(kept.items()) if len(thread) >= 2)
    pipeline.fake.admin.delete_issue(pipeline.stored_issues()[issue_id]["key"])

    # A delta proves nothing: the issue is only missing from a search.
    assert pipeline.run("jira_issues_job", pipeline.today).success
    assert stored_threads(pipeline).keys() == kept.keys()
    result = pipeline.run("jira_sync_job", pipeline.today, reconcile_deletions=True)

    assert result.success
    assert issue_id not in stored_threads(pipeline)
    assert set(stored_threads(pipeline, deleted=True)[issue_id]) == set(kept[issue_id])
    assert without_sync_times(stored_threads(pipeline)) == without_sync_times(
        {i: t for i, t in kept.items() if i != issue_id})
    [figures] = materializations(result, "jira_issue_comments")
    assert figures["deleted_with_their_issue"] == len(kept[issue_id])
    assert comments_complete(result).passed


class _CountingCollection:
    """A collection whose `find` answers are counted: how many comment blocks each held."""

    def __init__(self, collection: Any, blocks_per_answer: list[int]) -> None:
        self._collection, self._blocks = collection, blocks_per_answer

    def find(self, selector: dict, projection: dict) -> list[dict]:
        answer = list(self._collection.find(selector, projection))
        if "raw.fields.comment" in projection:
            self._blocks.append(len(answer))
        return answer


class _CountingDb:
    def __init__(self, db: Any) -> None:
        self._db = db
        self.blocks_per_answer: list[int] = []

    def __getitem__(self, name: str) -> _CountingCollection:
        return _CountingCollection(self._db[name], self.blocks_per_answer)


def test_comment_blocks_are_read_a_batch_of_issues_at_a_time(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    """The embedded store's cursor holds a query's whole answer: the window's comment blocks
    (a whole site's, in a full sync) are never one answer."""
    from jira_pipeline.assets.comments import stored_issue_batches
    from jira_pipeline.assets.issue_window import StoredWindow

    pipeline = pipeline_factory(issues=50, days=2)
    keys = pipeline.partition_keys()
    assert pipeline.run("jira_sync_job", keys[0], keys[-1], assets=("jira_issues",)).success
    db = _CountingDb(pipeline.db)
    connection_id = next(iter(pipeline.stored_issues().values()))["connection_id"]

    batches = list(stored_issue_batches(cast(Database, db), connection_id,
                                        StoredWindow(None, None), size=7))

    assert [len(batch) for batch in batches[:-1]] == [7] * (len(batches) - 1)
    assert sorted(i["issue_id"] for b in batches for i in b) == sorted(pipeline.stored_issues())
    assert all("comment" in issue["raw"]["fields"] for batch in batches for issue in batch)
    assert db.blocks_per_answer and max(db.blocks_per_answer) <= 7


def test_the_next_batches_threads_are_fetched_while_a_batch_is_written(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's truncated threads wait on Jira while the batch before it is written: the
    fetches of the next THREAD_BATCHES_AHEAD batches are under way when a batch's comments are
    handed over, and the comments stored are still exactly Jira's."""
    from jira_pipeline.assets import comments

    pipeline = pipeline_factory(issues=120, days=3)
    batches = comments.stored_issue_batches
    monkeypatch.setattr(comments, "stored_issue_batches",
                        lambda db, connection, window: batches(db, connection, window, size=10))
    events: list[str] = []
    start, write = comments.CommentStream._start_threads, comments.CommentStream._batch_items

    def started(self: Any, batch: list[dict[str, Any]]) -> Any:
        events.append("start")
        return start(self, batch)

    def written(self: Any, *args: Any) -> Any:
        events.append("write")
        return write(self, *args)

    monkeypatch.setattr(comments.CommentStream, "_start_threads", started)
    monkeypatch.setattr(comments.CommentStream, "_batch_items", written)

    assert pipeline.sync_everything().success

    total = events.count("start")
    assert total == events.count("write") >= 6  # 120 issues, 10 a batch, over the partitions
    ahead = comments.THREAD_BATCHES_AHEAD
    # Before each batch is written, the fetches of the next `ahead` batches (as far as the
    # partition has them) were started.
    assert events[:ahead + 1] == ["start"] * (ahead + 1)
    assert events[ahead + 1] == "write"
    expected = jira_threads(pipeline)
    assert {i: {c["id"] for c in t} for i, t in expected.items() if t} == {
        i: set(t) for i, t in stored_threads(pipeline).items()
    }
