"""The JQL builder: bounded windows in epoch ms, validated keys, fenced user JQL."""

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jira_pipeline.jira.jql import (
    IssueWindow,
    JqlError,
    build_issue_jql,
    fence_user_jql,
    project_clause,
)
from jira_pipeline.timeutil import to_epoch_ms

START = datetime(2026, 1, 14, tzinfo=UTC)
END = datetime(2026, 1, 15, tzinfo=UTC)


def test_window_is_bounded_on_both_sides_in_epoch_milliseconds():
    jql = build_issue_jql(IssueWindow(START, END))
    assert jql == (
        f"updated >= {to_epoch_ms(START)} AND updated < {to_epoch_ms(END)} ORDER BY key ASC"
    )
    assert "-" not in jql.split("ORDER")[0]  # no date string Jira could read in a user's zone


def test_window_bounds_do_not_depend_on_the_offset_the_datetimes_carry():
    tokyo = timezone(timedelta(hours=9))
    same = IssueWindow(START.astimezone(tokyo), END.astimezone(tokyo))
    assert build_issue_jql(same) == build_issue_jql(IssueWindow(START, END))


def test_naive_or_empty_windows_are_refused():
    with pytest.raises(ValueError):
        IssueWindow(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError):
        IssueWindow(END, START)


def test_split_windows_are_adjacent_and_cover_the_whole():
    parts = IssueWindow(START, END + timedelta(milliseconds=7)).split(4)
    assert len(parts) == 4
    assert parts[0].start == START and parts[-1].end == END + timedelta(milliseconds=7)
    for left, right in itertools.pairwise(parts):
        assert left.end == right.start


def test_widened_window_overlaps_the_previous_one():
    widened = IssueWindow(START, END).widened(timedelta(minutes=10))
    assert widened.start == START - timedelta(minutes=10) and widened.end == END


def test_project_keys_are_quoted():
    assert project_clause(["ABC"]) == 'project = "ABC"'
    assert project_clause(["ABC", "X_1"]) == 'project in ("ABC", "X_1")'


@pytest.mark.parametrize(
    "key",
    ['ABC" OR project = "SECRET', "abc", "A B", "ABC)", "", "1AB", 'A"', "ABC OR 1=1"],
)
def test_project_keys_that_could_inject_jql_are_rejected(key):
    with pytest.raises(JqlError, match="not a Jira project key"):
        build_issue_jql(IssueWindow(START, END), projects=[key])


def test_user_jql_is_parenthesised_before_it_is_anded():
    jql = build_issue_jql(IssueWindow(START, END), user_jql="status = Done OR priority = High")
    assert " AND (status = Done OR priority = High) ORDER BY" in jql


@pytest.mark.parametrize(
    "user_jql",
    [
        "status = Done) OR (project = SECRET",
        "status = Done)",
        "(status = Done",
        'summary ~ "unterminated',
        "status = Done ORDER BY created DESC",
        "   ",
    ],
)
def test_user_jql_that_could_escape_its_parentheses_is_rejected(user_jql):
    with pytest.raises(JqlError):
        fence_user_jql(user_jql)


def test_parentheses_and_order_by_inside_string_literals_are_harmless():
    fenced = fence_user_jql('summary ~ "a) OR (b order by x" AND labels = \'x(\'')
    assert fenced.startswith("(") and fenced.endswith(")")


def test_unbounded_search_is_refused():
    with pytest.raises(JqlError, match="unbounded"):
        build_issue_jql()
