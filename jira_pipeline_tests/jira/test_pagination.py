"""Page walks for each pagination style Jira uses, including servers whose paging is broken.

The walks take a page-fetching function; here it serves pages from a list in memory, which is
the whole contract between a walk and the client.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jira_pipeline.jira import merge_pages
from jira_pipeline.jira._exceptions import JiraPaginationError
from jira_pipeline.jira.pagination import array_pages, offset_pages, token_pages

RECORDS = [{"id": str(n)} for n in range(23)]


def collect(pages):
    async def run():
        return [item async for page in pages for item in page]

    return asyncio.run(run())


def offset_server(records, *, items_key="values", is_last=True, total=True, start_shift=0):
    requests = []

    async def fetch(params):
        requests.append(params)
        start, size = params["startAt"], params["maxResults"]
        body = {"startAt": start + start_shift, "maxResults": size,
                items_key: records[start:start + size]}
        if total:
            body["total"] = len(records)
        if is_last:
            body["isLast"] = start + size >= len(records)
        return body

    return fetch, requests


@pytest.mark.parametrize("size", [1, 5, 22, 23, 50])
def test_offset_pages_yield_every_record_once_for_every_page_size(size):
    fetch, requests = offset_server(RECORDS)
    assert collect(offset_pages(fetch, page_size=size)) == RECORDS
    assert len(requests) == -(-len(RECORDS) // size)


def test_data_center_pages_stop_at_total_without_is_last():
    fetch, requests = offset_server(RECORDS, items_key="issues", is_last=False)
    assert collect(offset_pages(fetch, page_size=10, items_key="issues")) == RECORDS
    assert len(requests) == 3


def test_offset_pages_that_go_backwards_raise():
    fetch, _ = offset_server(RECORDS, start_shift=-1)

    async def first_fine_then_backwards(params):
        body = await fetch(params)
        if params["startAt"] == 0:
            body["startAt"] = 0
        return body

    with pytest.raises(JiraPaginationError, match="backwards"):
        collect(offset_pages(first_fine_then_backwards, page_size=5))


def test_a_server_that_serves_the_same_page_forever_raises():
    async def stuck(params):
        return {"startAt": params["startAt"], "values": RECORDS[:5], "isLast": False}

    with pytest.raises(JiraPaginationError, match="repeats"):
        collect(offset_pages(stuck, page_size=5))


def test_endless_pages_stop_at_the_page_limit():
    async def endless(params):
        start = params["startAt"]
        return {"startAt": start, "values": [{"id": str(start + i)} for i in range(5)],
                "isLast": False}

    with pytest.raises(JiraPaginationError, match="more than 10 pages"):
        collect(offset_pages(endless, page_size=5, max_pages=10))


def test_empty_page_claiming_more_to_come_raises():
    async def empty(params):
        return {"startAt": params["startAt"], "values": [], "isLast": False, "total": 40}

    with pytest.raises(JiraPaginationError, match="never end"):
        collect(offset_pages(empty, page_size=5))


@pytest.mark.parametrize("size", [1, 4, 23, 24, 100])
def test_bare_array_pages_stop_on_a_short_page(size):
    requests = []

    async def fetch(params):
        requests.append(params)
        return RECORDS[params["startAt"]:params["startAt"] + params["maxResults"]]

    assert collect(array_pages(fetch, page_size=size)) == RECORDS
    assert len(requests) == len(RECORDS) // size + 1


def test_bare_array_that_ignores_start_at_raises():
    async def fetch(params):
        return RECORDS[: params["maxResults"]]

    with pytest.raises(JiraPaginationError, match="repeats"):
        collect(array_pages(fetch, page_size=5))


def token_server(records, size_cap=None):
    async def fetch(params):
        size = min(params["maxResults"], size_cap or 10**9)
        start = int(params.get("nextPageToken", "0"))
        page = records[start:start + size]
        last = start + size >= len(records)
        body = {"issues": page, "isLast": last}
        if not last:
            body["nextPageToken"] = str(start + size)
        return body

    return fetch


@pytest.mark.parametrize("size", [1, 7, 23, 100])
def test_token_pages_follow_next_page_token_to_is_last(size):
    assert collect(token_pages(token_server(RECORDS), page_size=size)) == RECORDS


def test_a_repeated_next_page_token_raises():
    async def loop(params):
        return {"issues": [{"id": params.get("nextPageToken", "start")}], "isLast": False,
                "nextPageToken": "same"}

    with pytest.raises(JiraPaginationError, match="repeated"):
        collect(token_pages(loop, page_size=1))


def test_a_page_of_the_wrong_shape_raises():
    async def wrong(params):
        return {"values": "nope"}

    with pytest.raises(JiraPaginationError, match="expected"):
        collect(offset_pages(wrong, page_size=5))


def test_merged_walks_run_at_most_max_running_at_once_and_every_page_arrives() -> None:
    running = peak = 0

    async def walk(n: int) -> AsyncIterator[list[Any]]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            for page in range(3):
                await asyncio.sleep(0.001 * (n % 3))  # walks of unequal pace interleave
                yield [(n, page)]
        finally:
            running -= 1

    async def merged() -> list[Any]:
        return [row async for page in merge_pages([walk(n) for n in range(7)], max_running=3)
                for row in page]

    rows = asyncio.run(merged())
    assert sorted(rows) == [(n, page) for n in range(7) for page in range(3)]
    assert peak == 3 and running == 0
