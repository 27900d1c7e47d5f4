"""The fake's issue histories at scale: many generated histories per issue (the `histories`
knob) and `POST /changelog/bulkfetch`, paged over the histories of up to 1,000 issues."""

from __future__ import annotations

import base64
import hashlib
import random
import weakref
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from jira_pipeline.fakejira.dataset import Dataset, History, HistoryItem, Issue

if TYPE_CHECKING:
    from jira_pipeline.fakejira.render import SiteRenderer
    from jira_pipeline.fakejira.site import FakeJiraSite

# What the OpenAPI document allows a BulkChangelogRequestBean.
BULK_ISSUES_CAP = 1000
BULK_FIELDS_CAP = 10
BULK_DEFAULT_PAGE = 1000
BULK_MAX_PAGE = 10_000
_REQUEST_KEYS = {"issueIdsOrKeys", "fieldIds", "maxResults", "nextPageToken"}
CHANGELOG_GLITCHES = ("no_token", "short", "repeat_token")
_CACHED_CALLS = 2  # a walk re-asks the same call page after page


class ChangelogRequestError(ValueError):
    """A bulkfetch request Jira would refuse with 400; the message is Jira's."""


def generated_histories(data: Dataset, issue: Issue) -> list[History]:
    """An issue's generated past under the `histories` knob: `low..high` histories (fixed by the
    issue's seed), spread evenly from creation to its seeded `updated`. Most change the status
    (the last status change ends at the seeded status), the others edit the summary (the last
    edit ends at the summary the issue has), so replaying them ends at the issue as served."""
    assert data.history_range is not None
    low, high = data.history_range
    count = low + (issue.seed >> 4) % (high - low + 1)
    if not count or issue.seeded <= issue.created:
        return []
    rng = random.Random(issue.seed ^ 0x5EED)
    is_status = [rng.random() < 0.8 for _ in range(count)]
    last_status = max((n for n, flag in enumerate(is_status) if flag), default=-1)
    edits = count - sum(is_status)
    pool = data.project_statuses(issue.project)
    statuses = data.statuses
    previous, summary_edit = 0, 0  # issues start in "To Do"
    span = issue.seeded - issue.created
    histories: list[History] = []
    for n in range(count):
        item: HistoryItem
        if is_status[n]:
            choice = issue.seeded_status if n == last_status else rng.choice(pool)
            if choice == previous and n != last_status and len(pool) > 1:
                choice = next(s for s in pool if s != previous)
            before, after = statuses[previous], statuses[choice]
            item = ("status", "jira", "status", before.id, before.name, after.id, after.name)
            previous = choice
        else:
            summary_edit += 1
            item = ("summary", "jira", "summary", None, _draft(issue, summary_edit - 1, edits),
                    None, _draft(issue, summary_edit, edits))
        histories.append(History(
            id=str(issue.id * 1000 + n),
            author=rng.randrange(len(data.users)),
            created_ms=issue.created + span * (n + 1) // count,
            offset=issue.offset,
            items=(item,),
        ))
    return histories


def _draft(issue: Issue, edit: int, edits: int) -> str:
    """The summary after `edit` of `edits` summary edits: the seeded summary after the last."""
    return issue.summary if edit == edits else f"{issue.summary} (draft {edit + 1})"


# --- POST /changelog/bulkfetch -------------------------------------------------------------


@dataclass
class ChangelogKnobs:
    """How bulkfetch pages misbehave, set through `POST /_fake/changelog`.

    `glitch_next_page` is one-shot, spent on the next page that has more after it: "no_token"
    leaves its nextPageToken out (the walk ends early, nothing says so), "short" drops the first
    half of its histories while the token carries on past them, "repeat_token" answers with the
    token the request carried (spent on the first such page that carried one). `page_cap` serves
    at most this many histories a page whatever maxResults asks (0: maxResults).
    """

    glitch_next_page: str | None = None
    page_cap: int = 0


@dataclass(frozen=True)
class _Entry:
    created_ms: int
    issue_id: int
    seq: int  # the history's place in its issue's changelog
    history: History

    @property
    def key(self) -> tuple[int, int, int]:
        return self.created_ms, self.issue_id, self.seq


@dataclass
class _ChangelogState:
    data: Dataset
    knobs: ChangelogKnobs = field(default_factory=ChangelogKnobs)
    # A call's histories in order, and their sort keys (what a token's position is found in).
    calls: OrderedDict[tuple, tuple[list[_Entry], list[tuple[int, int, int]]]] = field(
        default_factory=OrderedDict)


_STATES: weakref.WeakKeyDictionary[FakeJiraSite, _ChangelogState] = weakref.WeakKeyDictionary()


def _state(site: FakeJiraSite) -> _ChangelogState:
    """The site's bulkfetch state; a reset site (new dataset) starts afresh."""
    state = _STATES.get(site)
    if state is None or state.data is not site.data:
        state = _STATES[site] = _ChangelogState(site.data)
    return state


def configure_changelog(site: FakeJiraSite, body: dict[str, Any]) -> dict[str, Any]:
    """`POST /_fake/changelog`: set `glitch_next_page` and/or `page_cap`; returns both."""
    knobs = _state(site).knobs
    unknown = set(body) - {"glitch_next_page", "page_cap"}
    if unknown:
        raise ValueError(f"unknown changelog knobs: {', '.join(sorted(unknown))}")
    if "glitch_next_page" in body:
        glitch = body["glitch_next_page"]
        if glitch is not None and glitch not in CHANGELOG_GLITCHES:
            raise ValueError(f"glitch_next_page must be one of {', '.join(CHANGELOG_GLITCHES)} "
                             "or null")
        knobs.glitch_next_page = glitch
    if "page_cap" in body:
        cap = int(body["page_cap"])
        if cap < 0:
            raise ValueError("page_cap must not be negative")
        knobs.page_cap = cap
    return {"glitch_next_page": knobs.glitch_next_page, "page_cap": knobs.page_cap}


@dataclass(frozen=True)
class BulkChangelogRequest:
    issue_ids_or_keys: tuple[str, ...]
    field_ids: tuple[str, ...]
    max_results: int
    next_page_token: str | None

    @classmethod
    def parse(cls, raw: bytes) -> BulkChangelogRequest:
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise ChangelogRequestError("Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ChangelogRequestError("Request body must be a JSON object.")
        unknown = set(body) - _REQUEST_KEYS
        if unknown:
            raise ChangelogRequestError(f"Unrecognized field(s): {', '.join(sorted(unknown))}.")
        ids = body.get("issueIdsOrKeys")
        if not isinstance(ids, list) or not ids or not all(isinstance(v, str) for v in ids):
            raise ChangelogRequestError("issueIdsOrKeys must be a non-empty list of issue ids "
                                        "or keys.")
        if len(ids) > BULK_ISSUES_CAP:
            raise ChangelogRequestError(
                f"A maximum of {BULK_ISSUES_CAP} issue ids or keys can be requested at once.")
        fields = body.get("fieldIds") or []
        if not isinstance(fields, list) or not all(isinstance(v, str) for v in fields):
            raise ChangelogRequestError("fieldIds must be a list of field ids.")
        if len(fields) > BULK_FIELDS_CAP or len(set(fields)) != len(fields):
            raise ChangelogRequestError(
                f"fieldIds must hold at most {BULK_FIELDS_CAP} distinct field ids.")
        size = body.get("maxResults", BULK_DEFAULT_PAGE)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= BULK_MAX_PAGE:
            raise ChangelogRequestError(
                f"maxResults must be an integer between 1 and {BULK_MAX_PAGE}.")
        token = body.get("nextPageToken")
        if token is not None and not isinstance(token, str):
            raise ChangelogRequestError("nextPageToken must be a string.")
        return cls(tuple(ids), tuple(fields), size, token)

    @property
    def digest(self) -> str:
        """Ties a token to the call it pages (the same issues and fields)."""
        text = "\x1f".join((*self.issue_ids_or_keys, "\x1e", *self.field_ids))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _resolve(site: FakeJiraSite, wanted: tuple[str, ...]) -> list[Issue]:
    """The issues named that exist and the user can see, each once (others are left out, as
    Jira leaves them out)."""
    data = site.data
    found: dict[int, Issue] = {}
    for value in wanted:
        issue = data.by_key.get(value.upper())
        if issue is None and value.isdigit():
            number = int(value) - 10_000
            issue = data.issues[number] if 0 <= number < len(data.issues) else None
        if issue is None or issue.deleted or \
                data.projects[issue.project].key in site.knobs.forbidden_projects:
            continue
        found.setdefault(issue.id, issue)
    return list(found.values())


def _entries(site: FakeJiraSite, renderer: SiteRenderer,
             request: BulkChangelogRequest) -> tuple[list[_Entry], list[tuple[int, int, int]]]:
    """Every history of the call's issues, oldest first (then by issue id): built once per call
    and data version, since a walk asks for it page after page."""
    state = _state(site)
    issues = _resolve(site, request.issue_ids_or_keys)
    cache_key = (tuple(i.id for i in issues), request.field_ids, site.data.version,
                 site.knobs.forbidden_projects)
    cached = state.calls.get(cache_key)
    if cached is not None:
        state.calls.move_to_end(cache_key)
        return cached
    wanted_fields = set(request.field_ids)
    entries: list[_Entry] = []
    for issue in issues:
        for seq, history in enumerate(renderer.histories(issue)):
            if wanted_fields:
                items = tuple(item for item in history.items if item[2] in wanted_fields)
                if not items:
                    continue
                if len(items) != len(history.items):
                    history = History(history.id, history.author, history.created_ms,
                                      history.offset, items)
            entries.append(_Entry(history.created_ms, issue.id, seq, history))
    entries.sort(key=lambda entry: entry.key)
    state.calls[cache_key] = entries, [entry.key for entry in entries]
    while len(state.calls) > _CACHED_CALLS:
        state.calls.popitem(last=False)
    return state.calls[cache_key]


def _token(digest: str, key: tuple[int, int, int]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([digest, *key])).decode().rstrip("=")


def _untoken(digest: str, token: str) -> tuple[int, int, int]:
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        token_digest, created_ms, issue_id, seq = decoded
        if token_digest != digest:
            raise ChangelogRequestError("The nextPageToken does not belong to this request.")
        return int(created_ms), int(issue_id), int(seq)
    except ChangelogRequestError:
        raise
    except (ValueError, TypeError):
        raise ChangelogRequestError(f"Invalid nextPageToken: {token!r}.") from None


def bulk_changelog_page(site: FakeJiraSite, renderer: SiteRenderer, raw: bytes) -> dict:
    """One BulkChangelogResponseBean: the request's next `maxResults` histories across its
    issues, oldest first, grouped by issue; `nextPageToken` while more remain (a keyset
    position, so histories added during the walk come at its end, never shift it)."""
    request = BulkChangelogRequest.parse(raw)
    entries, keys = _entries(site, renderer, request)
    digest = request.digest
    start = 0
    if request.next_page_token is not None:
        start = bisect_right(keys, _untoken(digest, request.next_page_token))
    knobs = _state(site).knobs
    size = min(request.max_results, knobs.page_cap) if knobs.page_cap else request.max_results
    page = entries[start:start + size]
    has_more = start + size < len(entries)
    token = _token(digest, page[-1].key) if has_more and page else None
    glitch = knobs.glitch_next_page if has_more else None
    if glitch == "repeat_token" and request.next_page_token is None:
        glitch = None  # spent on a page that carried a token
    if glitch is not None:
        knobs.glitch_next_page = None
        if glitch == "no_token":
            token = None
        elif glitch == "short":
            page = page[max(1, len(page) // 2):]
        else:
            token = request.next_page_token
    groups: dict[int, list[dict]] = {}
    for entry in page:
        groups.setdefault(entry.issue_id, []).append(renderer.history(entry.history))
    body: dict[str, Any] = {"issueChangeLogs": [
        {"issueId": str(issue_id), "changeHistories": histories}
        for issue_id, histories in groups.items()
    ]}
    if token is not None:
        body["nextPageToken"] = token
    return body
