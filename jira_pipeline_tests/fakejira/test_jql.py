"""The fake's JQL selects exactly what Jira would, including the searcher's time-zone trap.

The expected result of every query is computed here from the fake's own issue dump (admin
endpoint) and from one unfiltered walk, never written down by hand.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.conftest import FAKE_JIRA_NOW
from jira_pipeline_tests.fakejira.jira_pages import (
    basic_client,
    error_messages,
    search_keys,
    walk_token_pages,
)

OPERATORS: dict[str, Callable[[int, int], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class IssueTable:
    """What the fake holds, as the tests' oracle: key -> (project, created ms, updated ms)."""

    def __init__(self, fake: Any, client: httpx.Client) -> None:
        dump = fake.admin.issues()
        self.projects = sorted({row["project_key"] for row in dump})
        every = f"project in ({', '.join(self.projects)})"
        issues, _ = walk_token_pages(client, every, 100, fields="created,updated,project")
        self.rows = {
            issue["key"]: (
                issue["fields"]["project"]["key"],
                to_epoch_ms(parse_jira_datetime(issue["fields"]["created"])),
                to_epoch_ms(parse_jira_datetime(issue["fields"]["updated"])),
            )
            for issue in issues
        }
        assert set(self.rows) == {row["key"] for row in dump}
        for row in dump:  # the search and the admin dump agree on every `updated`
            assert self.rows[row["key"]][2] == to_epoch_ms(parse_jira_datetime(row["updated"]))

    def keys(self, keep: Callable[[str, int, int], bool]) -> set[str]:
        return {key for key, row in self.rows.items() if keep(*row)}

    def median(self, column: int) -> int:
        values = sorted(row[column] for row in self.rows.values())
        return values[len(values) // 2]


@pytest.fixture(scope="module")
def table(read_only_fake: Any, reader: httpx.Client) -> IssueTable:
    return IssueTable(read_only_fake, reader)


@pytest.mark.parametrize("op", list(OPERATORS))
@pytest.mark.parametrize(("field", "column"), [("updated", 2), ("created", 1)])
def test_epoch_millisecond_bound_is_exact(
    reader: httpx.Client, table: IssueTable, field: str, column: int, op: str
) -> None:
    bound = table.median(column)  # an issue sits exactly on the bound: > and >= must differ
    expected = table.keys(lambda *row: OPERATORS[op](row[column], bound))
    assert 0 < len(expected) < len(table.rows)
    assert set(search_keys(reader, f"{field} {op} {bound}")) == expected


def test_two_sided_window_selects_issues_inside_it(reader: httpx.Client, table: IssueTable) -> None:
    start = table.median(2) - 5 * 86_400_000
    end = table.median(2) + 86_400_000
    expected = table.keys(lambda _p, _c, updated: start <= updated < end)
    assert expected
    assert set(search_keys(reader, f"updated >= {start} AND updated < {end}")) == expected


@pytest.mark.parametrize(
    ("pattern", "granularity"),
    [("%Y-%m-%d %H:%M", "minute"), ("%Y/%m/%d %H:%M", "minute"), ("%Y-%m-%d", "day")],
)
def test_date_string_bound_is_read_at_minute_or_day_granularity(
    reader: httpx.Client, table: IssueTable, pattern: str, granularity: str
) -> None:
    # The default fake's user lives in UTC, so the string's wall time is UTC here.
    moment = datetime.fromtimestamp(table.median(2) / 1000, tz=ZoneInfo("UTC"))
    floor = moment.replace(second=0, microsecond=0)
    if granularity == "day":
        floor = floor.replace(hour=0, minute=0)
    bound = to_epoch_ms(floor)
    expected = table.keys(lambda _p, _c, updated: updated >= bound)
    assert set(search_keys(reader, f'updated >= "{moment:{pattern}}"')) == expected


def test_project_equals_selects_one_project(reader: httpx.Client, table: IssueTable) -> None:
    project = table.projects[0]
    expected = table.keys(lambda p, _c, _u: p == project)
    assert set(search_keys(reader, f"project = {project}")) == expected


def test_project_in_selects_the_listed_projects(reader: httpx.Client, table: IssueTable) -> None:
    chosen = set(table.projects[:2])
    expected = table.keys(lambda p, _c, _u: p in chosen)
    assert set(search_keys(reader, f"project in ({', '.join(sorted(chosen))})")) == expected


def test_project_not_equals_and_not_in_exclude(reader: httpx.Client, table: IssueTable) -> None:
    first, second = table.projects[:2]
    after = table.median(2)
    assert set(search_keys(reader, f"project != {first} AND updated > {after}")) == table.keys(
        lambda p, _c, u: p != first and u > after
    )
    assert set(
        search_keys(reader, f"project not in ({first}, {second}) AND updated > {after}")
    ) == table.keys(lambda p, _c, u: p not in (first, second) and u > after)


def test_and_binds_tighter_than_or_and_parentheses_override(
    reader: httpx.Client, table: IssueTable
) -> None:
    first, second = table.projects[:2]
    after = table.median(2)
    loose = table.keys(lambda p, _c, u: p == first or (p == second and u > after))
    grouped = table.keys(lambda p, _c, u: p in (first, second) and u > after)
    assert loose != grouped
    a, b, late = f"project = {first}", f"project = {second}", f"updated > {after}"
    assert set(search_keys(reader, f"{a} OR {b} AND {late}")) == loose
    assert set(search_keys(reader, f"({a} OR {b}) AND {late}")) == grouped
    assert set(search_keys(reader, f"{a} or ({b} and {late})")) == loose


@pytest.mark.parametrize(("field", "column"), [("updated", 2), ("created", 1)])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_order_by_date_sorts_the_whole_result(
    reader: httpx.Client, table: IssueTable, field: str, column: int, direction: str
) -> None:
    every = f"project in ({', '.join(table.projects)})"
    keys = search_keys(reader, f"{every} ORDER BY {field} {direction}")
    values = [table.rows[key][column] for key in keys]
    assert values == sorted(values, reverse=direction == "DESC")
    assert set(keys) == set(table.rows)


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_order_by_key_sorts_numbers_numerically_within_projects(
    reader: httpx.Client, table: IssueTable, direction: str
) -> None:
    every = f"project in ({', '.join(table.projects)})"
    keys = search_keys(reader, f"{every} ORDER BY key {direction}")
    projects_in_order = [key.split("-")[0] for key in keys]
    runs = [p for i, p in enumerate(projects_in_order) if i == 0 or projects_in_order[i - 1] != p]
    assert len(runs) == len(set(runs)), "each project's issues come in one run"
    for project in runs:
        numbers = [int(key.split("-")[1]) for key in keys if key.startswith(f"{project}-")]
        assert numbers == sorted(numbers, reverse=direction == "DESC")
    assert set(keys) == set(table.rows)


def test_ordering_does_not_change_what_is_selected(reader: httpx.Client, table: IssueTable) -> None:
    bound = table.median(2)
    plain = search_keys(reader, f"updated > {bound}")
    ordered = search_keys(reader, f"updated > {bound} order by created desc")
    assert sorted(plain) == sorted(ordered) and len(plain) == len(ordered)


@pytest.mark.parametrize(
    "jql",
    [
        "project = ",
        "project == CORE",
        "updated >> 5",
        "updated >= 'yesterday at noon'",
        "project in (CORE, WEB",
        "(project = CORE",
        "nosuchfield = 1",
        "project = CORE AND",
        "project = CORE ORDER BY",
        "project = NOSUCHPROJECT",
        "updated >= 2026-13-45",
    ],
)
def test_malformed_jql_answers_400_with_error_messages(reader: httpx.Client, jql: str) -> None:
    response = reader.get("/rest/api/3/search/jql", params={"jql": jql})
    assert error_messages(response, 400)


@pytest.mark.parametrize("jql", ["", "   ", "ORDER BY key", "order by updated DESC"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unbounded_query_is_rejected(reader: httpx.Client, jql: str, method: str) -> None:
    if method == "GET":
        response = reader.get("/rest/api/3/search/jql", params={"jql": jql})
    else:
        response = reader.post("/rest/api/3/search/jql", json={"jql": jql})
    assert error_messages(response, 400)


def test_unbounded_count_is_rejected(reader: httpx.Client) -> None:
    response = reader.post("/rest/api/3/search/approximate-count", json={"jql": "ORDER BY key"})
    assert error_messages(response, 400)


# --- the time-zone trap -------------------------------------------------------------------

WEST, EAST = "America/Los_Angeles", "Pacific/Tongatapu"  # UTC-8 and UTC+13 in January


@pytest.fixture
def fakes_in_two_zones(fake_jira_factory: Any) -> dict[str, Any]:
    """The same site (seed, clock, sizes) searched by a user in UTC-8 and one in UTC+13."""
    return {
        zone: fake_jira_factory(issues=200, seed=5, now=FAKE_JIRA_NOW, user_timezone=zone)
        for zone in (WEST, EAST)
    }


def test_zones_are_the_extremes_the_trap_is_about() -> None:
    assert FAKE_JIRA_NOW.astimezone(ZoneInfo(WEST)).utcoffset() == timedelta(hours=-8)
    assert FAKE_JIRA_NOW.astimezone(ZoneInfo(EAST)).utcoffset() == timedelta(hours=13)


def test_same_date_string_selects_different_issues_per_user_time_zone(
    fakes_in_two_zones: dict[str, Any],
) -> None:
    west, east = fakes_in_two_zones[WEST], fakes_in_two_zones[EAST]
    with basic_client(west) as west_client, basic_client(east) as east_client:
        for zone, client in ((WEST, west_client), (EAST, east_client)):
            me = client.get("/rest/api/3/myself").json()
            assert me["timeZone"] == zone
        table = IssueTable(west, west_client)
        # A wall time 5 h after a real issue's update: for the UTC-8 user that is 13 h after it
        # (issue included by `<`), for the UTC+13 user 8 h before it (issue excluded).
        pivot = datetime.fromtimestamp(table.median(2) / 1000, tz=ZoneInfo("UTC"))
        wall = (pivot + timedelta(hours=5)).replace(tzinfo=None)
        jql = f'updated < "{wall:%Y-%m-%d %H:%M}"'
        selected = {}
        for zone, client in ((WEST, west_client), (EAST, east_client)):
            bound = to_epoch_ms(wall.replace(tzinfo=ZoneInfo(zone)))
            selected[zone] = set(search_keys(client, jql))
            assert selected[zone] == table.keys(
                lambda _p, _c, updated, b=bound: updated < b  # type: ignore[misc]
            )
    assert selected[WEST] != selected[EAST]
    assert selected[EAST] < selected[WEST]


def test_epoch_millisecond_bounds_select_the_same_issues_in_every_time_zone(
    fakes_in_two_zones: dict[str, Any],
) -> None:
    west, east = fakes_in_two_zones[WEST], fakes_in_two_zones[EAST]
    with basic_client(west) as west_client, basic_client(east) as east_client:
        table = IssueTable(west, west_client)
        start, end = table.median(2) - 86_400_000, table.median(2) + 3_600_000
        jql = f"updated >= {start} AND updated < {end} ORDER BY updated"
        west_keys = search_keys(west_client, jql)
        east_keys = search_keys(east_client, jql)
    assert west_keys == east_keys
    assert set(west_keys) == table.keys(lambda _p, _c, updated: start <= updated < end)
