"""One running fake Jira site: its dataset, clock, knobs, counters and the changes admins make."""

from __future__ import annotations

import copy
import random
import time
import uuid
from bisect import bisect_right
from collections import Counter, OrderedDict, defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from jira_pipeline.fakejira.config import FakeJiraConfig
from jira_pipeline.fakejira.dataset import (
    PRIORITIES,
    STATUS_CATEGORIES,
    Dataset,
    History,
    HistoryItem,
    Issue,
    Project,
    Status,
    User,
    build_dataset,
)
from jira_pipeline.fakejira.jql import Query, SearchContext, parse_jql
from jira_pipeline.fakejira.limits import FaultInjector, RateLimiter
from jira_pipeline.fakejira.oauth import OAuthIssuer
from jira_pipeline.fakejira.render import SiteRenderer, adf, jira_time
from jira_pipeline.timeutil import from_epoch_ms, to_epoch_ms, utc_now


class AdminError(ValueError):
    """An admin request that names something that does not exist or is malformed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeClock:
    """Runs forward with real time from a start point; admins may jump it."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, moment: datetime) -> None:
        self._start_ms = to_epoch_ms(moment)
        self._anchor = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._anchor) * 1000)

    def now(self) -> datetime:
        return from_epoch_ms(self.now_ms())

    def advance(self, seconds: float) -> None:
        self._start_ms += int(seconds * 1000)


@dataclass
class SearchResult:
    version: int
    keys: list[tuple[int, ...]]
    issues: list[Issue]


@dataclass
class Knobs:
    latency_ms: float
    rate_limit: float
    burst: int
    fault_rate: float
    token_ttl: int
    malformed_json_next: int
    forbidden_projects: tuple[str, ...]
    search_lag_s: float = 0.0


GLITCHES = ("no_token", "short")


@dataclass
class PagingKnobs:
    """How search pages are served, and how they misbehave (the misbehaviour real sites show).

    `glitch_next_page` is one-shot: spent on the next search page that has more pages after it
    ("no_token": Cloud answers isLast false without a nextPageToken, Data Center an empty page;
    "short": the page loses its first half while the paging carries on as if it had not).
    `search_page_cap` serves fewer issues per page than asked (Jira may; 0: Jira's own caps).
    `approximate_count_skew` is added to every approximate count.
    `change_after_served` (`{"key": "ABC-1", "action": "touch" | "delete"}`) is one-shot too: the
    issue is edited or deleted right after a search page holding it is served, i.e. during the
    walk that page belongs to.
    """

    paging: str = "keyset"
    glitch_next_page: str | None = None
    search_page_cap: int = 0
    approximate_count_skew: int = 0
    change_after_served: dict | None = None


class FakeJiraSite:
    def __init__(self, config: FakeJiraConfig) -> None:
        self.config = config
        self.start = config.now or utc_now().replace(microsecond=0)
        self.cloud_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-jira:{config.seed}"))
        self.user_zone = ZoneInfo(config.user_timezone)
        self.reset()

    def reset(self) -> None:
        """Back to the freshly seeded site: data, clock, knobs, limits, tokens and counters."""
        config = self.config
        self.clock = FakeClock(self.start)
        self.data: Dataset = build_dataset(config, self.start)
        self.knobs = Knobs(config.latency_ms, config.rate_limit, config.burst, config.fault_rate,
                           config.token_ttl, 0, tuple(config.forbidden_projects))
        self.paging_knobs = PagingKnobs(paging=config.paging)
        self.limiter = RateLimiter(config.rate_limit, config.burst)
        self.faults = FaultInjector(config.fault_rate, random.Random(config.seed * 7919 + 1))
        self.oauth = OAuthIssuer(config.oauth_client_id, config.oauth_client_secret, config.seed)
        self.renderers: dict[tuple[str, str], SiteRenderer] = {}
        self.searches: OrderedDict[tuple, SearchResult] = OrderedDict()
        self.requests: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.latency_waited_ms = 0.0
        self.rate_limited = 0
        self.in_retry_window = 0
        self.faults_served = 0
        self.issues_served = 0
        self.project_rank = self._project_rank()
        # Eventual consistency: (visible from ms, issue number, state search serves until then).
        self.unindexed: list[tuple[int, int, Issue | None]] = []

    def _project_rank(self) -> dict[int, int]:
        order = sorted(range(len(self.data.projects)), key=lambda p: self.data.projects[p].key)
        return {p: rank for rank, p in enumerate(order)}

    # --- reading ------------------------------------------------------------------------

    def renderer(self, base: str, api: str = "3") -> SiteRenderer:
        renderer = self.renderers.get((base, api))
        if renderer is None or renderer.data is not self.data:
            renderer = self.renderers[(base, api)] = SiteRenderer(
                self.data, base, api=api, cloud=self.config.mode == "cloud")
        return renderer

    def myself_index(self) -> int:
        return 0

    def search_context(self) -> SearchContext:
        return SearchContext(self.data, self.user_zone, self.clock.now_ms(), self.myself_index())

    def parse(self, jql: str | None, *, require_bound: bool = True, strict: bool = True) -> Query:
        context = self.search_context()
        if not strict:
            context = replace(context, strict_values=False)
        return parse_jql(jql, context, require_bound=require_bound)

    def forbidden_in(self, query: Query) -> str | None:
        for key in sorted(query.project_keys):
            if key in self.knobs.forbidden_projects:
                return key
        return None

    def visible_project_indexes(self) -> list[int]:
        hidden = set(self.knobs.forbidden_projects)
        return [i for i, p in enumerate(self.data.projects) if p.key not in hidden]

    def run(self, jql: str | None, query: Query) -> SearchResult:
        """Matching issues in order; cached per query until the data changes."""
        cache_key = (jql or "", self.knobs.forbidden_projects)
        cached = self.searches.get(cache_key)
        searchable = self.searchable_issues()
        # Relative dates (now(), -1d) move with the clock, so such queries are never cached; nor
        # are those answered while changes wait for the (lagging) index: the answer moves with
        # the clock too.
        if cached is not None and cached.version == self.data.version and not query.relative \
                and searchable is self.data.issues:
            self.searches.move_to_end(cache_key)
            return cached
        predicate = query.predicate
        visible = set(self.visible_project_indexes())
        matching = [i for i in searchable if not i.deleted and i.project in visible
                    and (predicate is None or predicate(i))]
        rank = self.project_rank
        order = query.order or [("key", True)]
        query_for_sort = replace(query, order=order)
        pairs = sorted(((query_for_sort.sort_key(i, rank), i) for i in matching),
                       key=lambda pair: pair[0])
        result = SearchResult(self.data.version, [k for k, _ in pairs], [i for _, i in pairs])
        if searchable is not self.data.issues:
            return result
        self.searches[cache_key] = result
        while len(self.searches) > 32:
            self.searches.popitem(last=False)
        return result

    @staticmethod
    def page_after(result: SearchResult, after: tuple[int, ...] | None, size: int) -> tuple[
            list[Issue], tuple[int, ...] | None]:
        """The page following sort position `after` (keyset paging survives data changes)."""
        start = 0 if after is None else bisect_right(result.keys, after)
        end = start + size
        page = result.issues[start:end]
        last = result.keys[end - 1] if end < len(result.keys) and page else None
        return page, last

    def searchable_issues(self) -> list[Issue]:
        """The issues as search sees them: a change made while `search_lag_s` was N reaches
        search N seconds (of the fake clock) later; until then search serves the issue as it
        was before (or not at all, if it was created within the lag). Reading an issue by key
        is consistent at once, as in Jira Cloud."""
        if not self.unindexed:
            return self.data.issues
        now = self.clock.now_ms()
        self.unindexed = [entry for entry in self.unindexed if entry[0] > now]
        before: dict[int, Issue | None] = {}
        for _visible_from, num, state in self.unindexed:
            before.setdefault(num, state)  # the oldest pending change: what search still shows
        if not before:
            return self.data.issues
        served = (before[issue.num] if issue.num in before else issue
                  for issue in self.data.issues)
        return [issue for issue in served if issue is not None]

    def _before_change(self, issue: Issue, *, created: bool = False) -> None:
        """Remember what search serves until the change about to be made reaches its index."""
        lag_ms = int(self.knobs.search_lag_s * 1000)
        if lag_ms > 0:
            state = None if created else copy.copy(issue)
            self.unindexed.append((self.clock.now_ms() + lag_ms, issue.num, state))

    # --- admin changes --------------------------------------------------------------------

    def _changed(self, issue: Issue) -> None:
        issue.version += 1
        self.data.version += 1

    def issue_by_key(self, key: str) -> Issue:
        issue = self.data.by_key.get(key.upper())
        if issue is None or issue.deleted:
            raise AdminError(404, f"Issue does not exist: {key}")
        return issue

    def create_issue(self, project_key: str, fields: dict | None = None) -> Issue:
        data = self.data
        project = next((i for i, p in enumerate(data.projects) if p.key == project_key.upper()),
                       None)
        if project is None:
            raise AdminError(404, f"No project with key {project_key!r}")
        now = self.clock.now_ms()
        rng = random.Random(f"{self.config.seed}:{len(data.issues)}")
        issue = Issue()
        issue.num = len(data.issues)
        issue.id = 10_000 + issue.num
        issue.project = project
        issue.key_num = data.next_key_num[project]
        data.next_key_num[project] += 1
        issue.key = f"{data.projects[project].key}-{issue.key_num}"
        issue.type, issue.parent = 2, -1
        issue.status = issue.seeded_status = 0
        issue.priority = 2
        issue.assignee = -1
        issue.reporter = self.myself_index()
        issue.created = issue.updated = issue.seeded = now
        issue.resolved = 0
        issue.offset = 0
        issue.labels = ()
        issue.components = ()
        issue.fix_version = -1
        issue.seed = rng.getrandbits(32)
        issue.summary = f"New issue {issue.key}"
        issue.custom = (None, -1, (), -1, -1, (), 0, None)
        issue.comments = issue.worklogs = 0
        self._before_change(issue, created=True)
        data.issues.append(issue)
        data.by_key[issue.key] = issue
        if fields:
            self._apply_fields(issue, fields, now, record=False)
        self._changed(issue)
        return issue

    def touch_issue(self, key: str, fields: dict | None = None) -> Issue:
        issue = self.issue_by_key(key)
        self._before_change(issue)
        now = max(self.clock.now_ms(), issue.updated + 1)
        if not fields:
            # A touch without fields still is a real edit: story points move by one.
            points = issue.custom[0] or 0.0
            fields = {"customfield_10016": points + 1.0}
        self._apply_fields(issue, fields, now, record=True)
        issue.updated = now
        self._changed(issue)
        return issue

    def set_raw_fields(
        self, key: str, fields: dict, remove: list[str], *, reset: bool = False
    ) -> Issue:
        """Serve these field values exactly as given (and leave `remove` out), without touching
        `updated`: the odd data a real site holds, for tests. `reset` first forgets earlier ones."""
        issue = self.issue_by_key(key)
        raw = {} if reset else dict(issue.raw_fields or {})
        raw.update(fields)
        raw.update(dict.fromkeys(remove))
        issue.raw_fields = raw
        self._changed(issue)
        return issue

    def delete_issue(self, key: str) -> None:
        issue = self.issue_by_key(key)
        self._before_change(issue)
        issue.deleted = True
        self._changed(issue)

    def change_status(self, status_id: str, name: str | None = None,
                      category: str | None = None) -> Status:
        """Rename or recategorise a status, as a Jira admin does: no issue's `updated` moves,
        yet every later answer that embeds the status shows it changed."""
        status = next((s for s in self.data.statuses if s.id == status_id), None)
        if status is None:
            raise AdminError(404, f"No status with id {status_id!r}")
        if name is None and category is None:
            raise AdminError(400, "Give name or category (TODO, IN_PROGRESS or DONE)")
        if category is not None:
            category = str(category).upper()
            if category not in STATUS_CATEGORIES:
                raise AdminError(400, f"category must be one of {', '.join(STATUS_CATEGORIES)}")
            status.category = category
        if name is not None:
            if not str(name).strip():
                raise AdminError(400, "name must not be blank")
            status.name = str(name)
        # Renderers hold each status's JSON built once: drop them so answers show the change.
        self.renderers.clear()
        self.data.version += 1
        return status

    def set_user_active(self, user_id: str, active: object) -> User:
        """Deactivate (or reactivate) a user by accountId, Data Center key or username."""
        user = next((u for u in self.data.users if user_id in (u.account_id, u.key, u.name)),
                    None)
        if user is None:
            raise AdminError(404, f"No user {user_id!r}")
        if not isinstance(active, bool):
            raise AdminError(400, "active must be true or false")
        user.active = active
        self.renderers.clear()
        self.data.version += 1
        return user

    def change_project(self, key: str, new_key: str | None = None,
                       name: str | None = None) -> Project:
        """Rename a project or change its key, as a Jira admin does: every issue of it gets the
        new key (old keys still find them) and no issue's `updated` moves."""
        data = self.data
        index = next((i for i, p in enumerate(data.projects) if p.key == key.upper()), None)
        if index is None:
            raise AdminError(404, f"No project with key {key!r}")
        project = data.projects[index]
        if new_key is not None:
            new_key = str(new_key).upper()
            if not new_key.isalnum() or not new_key[0].isalpha():
                raise AdminError(400, f"Project key {new_key!r} is not valid")
            if any(p.key == new_key for p in data.projects if p is not project):
                raise AdminError(400, f"Project key {new_key!r} is in use")
            project.key = new_key
            for issue in data.issues:
                if issue.project == index:
                    issue.key = f"{new_key}-{issue.key_num}"
                    data.by_key[issue.key] = issue  # the old key stays mapped too
            self.project_rank = self._project_rank()
        if name is not None:
            project.name = str(name)
        self.renderers.clear()
        data.version += 1
        return project

    def move_issue(self, key: str, project_key: str) -> Issue:
        """Move an issue (and its sub-tasks) to another project: a new key there, the same id,
        `updated` bumped; the old key still finds it (Jira redirects old keys)."""
        issue = self.issue_by_key(key)
        data = self.data
        target = next((i for i, p in enumerate(data.projects) if p.key == project_key.upper()),
                      None)
        if target is None:
            raise AdminError(404, f"No project with key {project_key!r}")
        if target == issue.project:
            raise AdminError(400, f"{issue.key} is already in {project_key.upper()}")
        self._move(issue, target)
        # Sub-tasks live in their parent's project: Jira moves them along.
        for child in issue.children or ():
            if not data.issues[child].deleted:
                self._move(data.issues[child], target)
        return issue

    def _move(self, issue: Issue, target: int) -> None:
        data = self.data
        now = max(self.clock.now_ms(), issue.updated + 1)
        old_key, old_project = issue.key, data.projects[issue.project]
        old_status = data.statuses[issue.status]
        choices = data.project_statuses(target)
        if issue.status not in choices:
            # Jira asks for a status mapping on a move; the fake maps to one of the same category.
            issue.status = next((s for s in choices
                                 if data.statuses[s].category == old_status.category), 0)
        issue.project = target
        issue.key_num = data.next_key_num[target]
        data.next_key_num[target] += 1
        issue.key = f"{data.projects[target].key}-{issue.key_num}"
        # Components and versions belong to the old project.
        issue.components, issue.fix_version = (), -1
        data.by_key[issue.key] = issue  # the old key stays mapped too
        new_project, new_status = data.projects[target], data.statuses[issue.status]
        items: list[HistoryItem] = [
            ("project", "jira", "project", old_project.id, old_project.name, new_project.id,
             new_project.name),
            ("Key", "jira", "issuekey", None, old_key, None, issue.key),
        ]
        if new_status is not old_status:
            items.append(("status", "jira", "status", old_status.id, old_status.name,
                          new_status.id, new_status.name))
        history = History(id=str(data.next_history_id), author=self.myself_index(),
                          created_ms=now, offset=issue.offset, items=tuple(items))
        data.next_history_id += 1
        issue.extra_histories = [*(issue.extra_histories or []), history]
        issue.updated = now
        self._changed(issue)

    def _apply_fields(self, issue: Issue, fields: dict, now: int, *, record: bool) -> None:
        data = self.data
        items: list[HistoryItem] = []
        for name, value in fields.items():
            before = self._field_string(issue, name)
            before_id = self._field_jira_id(issue, name)
            if name == "status":
                wanted = str(value.get("name") or value.get("id")) if isinstance(value, dict) \
                    else str(value)
                choices = data.project_statuses(issue.project)
                index = next((s for s in choices if wanted in (data.statuses[s].id,
                                                               data.statuses[s].name)), None)
                if index is None:
                    raise AdminError(400, f"Status {wanted!r} is not available in this project")
                old = data.statuses[issue.status]
                issue.status = index
                new = data.statuses[index]
                issue.resolved = now if new.category == "DONE" else 0
                items.append(("status", "jira", "status", old.id, old.name, new.id, new.name))
                continue
            if name == "assignee":
                account = value.get("accountId") if isinstance(value, dict) else value
                found = next((i for i, u in enumerate(data.users) if u.account_id == account), None)
                if account is not None and found is None:
                    raise AdminError(400, f"No user with accountId {account!r}")
                issue.assignee = -1 if found is None else found
            elif name == "priority":
                priority = value.get("name") if isinstance(value, dict) else value
                found = next((i for i, p in enumerate(PRIORITIES) if priority in p[:2]), None)
                if found is None:
                    raise AdminError(400, f"No priority {priority!r}")
                issue.priority = found
            elif name == "labels":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise AdminError(400, "labels must be a list of strings")
                issue.labels = tuple(sorted(value))
            elif name == "customfield_10016":
                issue.custom = (value, *issue.custom[1:])
            elif name == "description" and isinstance(value, str):
                issue.overrides = {**(issue.overrides or {}), name: adf([value])}
            else:
                issue.overrides = {**(issue.overrides or {}), name: value}
            after = self._field_string(issue, name)
            items.append((name, "custom" if name.startswith("customfield_") else "jira", name,
                          before_id, before, self._field_jira_id(issue, name), after))
        if record and items:
            history = History(id=str(data.next_history_id), author=self.myself_index(),
                              created_ms=now, offset=issue.offset, items=tuple(items))
            data.next_history_id += 1
            issue.extra_histories = [*(issue.extra_histories or []), history]

    def _field_jira_id(self, issue: Issue, name: str) -> str | None:
        """What Jira writes as an item's `from`/`to`: the account id or priority id."""
        if name == "assignee":
            return self.data.users[issue.assignee].account_id if issue.assignee >= 0 else None
        if name == "priority":
            return PRIORITIES[issue.priority][0]
        return None

    def _field_string(self, issue: Issue, name: str) -> str | None:
        data = self.data
        if name == "assignee":
            return data.users[issue.assignee].display_name if issue.assignee >= 0 else None
        if name == "priority":
            return PRIORITIES[issue.priority][1]
        if name == "labels":
            return " ".join(issue.labels) or None
        if name == "customfield_10016":
            return None if issue.custom[0] is None else str(issue.custom[0])
        if name == "summary":
            return SiteRenderer.summary(issue)
        value = (issue.overrides or {}).get(name)
        return None if value is None else str(value)[:255]

    def dump(self) -> list[dict]:
        """The compact admin view of live issues (timestamps in UTC, Jira's format)."""
        data = self.data
        out = []
        for issue in data.issues:
            if issue.deleted:
                continue
            project = data.projects[issue.project]
            out.append({
                "id": str(issue.id),
                "key": issue.key,
                "project_id": project.id,
                "project_key": project.key,
                "updated": jira_time(issue.updated, 0),
                "created": jira_time(issue.created, 0),
                "status_id": data.statuses[issue.status].id,
                "assignee_account_id": (data.users[issue.assignee].account_id
                                        if issue.assignee >= 0 else None),
                "reporter_account_id": data.users[issue.reporter].account_id,
            })
        return out

    def stats(self) -> dict:
        return {
            "requests": {endpoint: {str(s): n for s, n in sorted(counts.items())}
                         for endpoint, counts in sorted(self.requests.items())},
            "latency_waited_ms": self.latency_waited_ms,
            "rate_limited": self.rate_limited,
            "requests_in_retry_after_window": self.in_retry_window,
            "faults": self.faults_served,
            "issues_served": self.issues_served,
            "issues": sum(1 for i in self.data.issues if not i.deleted),
            "now": self.clock.now().isoformat(),
        }

    def glitch_for_page(self, has_more: bool) -> str | None:
        """The pending one-shot glitch, spent on the first search page with more pages after it."""
        glitch = self.paging_knobs.glitch_next_page
        if glitch is None or not has_more:
            return None
        self.paging_knobs.glitch_next_page = None
        return glitch

    def page_size(self, asked: int) -> int:
        cap = self.paging_knobs.search_page_cap
        return min(asked, cap) if cap > 0 else asked

    def _configure_paging(self, knobs: dict) -> dict:
        """Apply the paging knobs among `knobs`; returns the others."""
        rest = dict(knobs)
        paging = self.paging_knobs
        if "paging" in rest:
            value = str(rest.pop("paging"))
            if value not in ("keyset", "offset"):
                raise AdminError(400, f"paging must be 'keyset' or 'offset', not {value!r}")
            paging.paging = value
        if "glitch_next_page" in rest:
            glitch = rest.pop("glitch_next_page")
            if glitch is not None and glitch not in GLITCHES:
                raise AdminError(400, f"glitch_next_page must be one of {', '.join(GLITCHES)} "
                                      "or null")
            paging.glitch_next_page = glitch
        if "search_page_cap" in rest:
            cap = int(rest.pop("search_page_cap"))
            if cap < 0:
                raise AdminError(400, "search_page_cap must not be negative")
            paging.search_page_cap = cap
        if "approximate_count_skew" in rest:
            paging.approximate_count_skew = int(rest.pop("approximate_count_skew"))
        if "change_after_served" in rest:
            change = rest.pop("change_after_served")
            if change is not None:
                if not isinstance(change, dict) or change.get("action") not in ("touch", "delete"):
                    raise AdminError(400, 'change_after_served must be {"key": ..., "action": '
                                          '"touch" or "delete"} or null')
                change = {"key": self.issue_by_key(str(change.get("key"))).key,
                          "action": change["action"]}
            paging.change_after_served = change
        return rest

    def page_served(self, issues: list[Issue]) -> None:
        """Apply a pending `change_after_served` once a page holding its issue went out."""
        change = self.paging_knobs.change_after_served
        if change is None or not any(issue.key == change["key"] for issue in issues):
            return
        self.paging_knobs.change_after_served = None
        if change["action"] == "delete":
            self.delete_issue(change["key"])
        else:
            self.touch_issue(change["key"])

    def configure(self, knobs: dict) -> dict:
        knobs = self._configure_paging(knobs)
        allowed = {"latency_ms", "rate_limit", "burst", "fault_rate", "token_ttl",
                   "malformed_json_next", "forbidden_projects", "search_lag_s"}
        unknown = set(knobs) - allowed
        if unknown:
            raise AdminError(400, f"Unknown config knobs: {', '.join(sorted(unknown))}")
        for name, value in knobs.items():
            if name == "forbidden_projects":
                value = tuple(str(v).upper() for v in value)
            elif name in ("burst", "token_ttl", "malformed_json_next"):
                value = int(value)
            else:
                value = float(value)
            if name != "forbidden_projects" and value < 0:
                raise AdminError(400, f"{name} must not be negative")
            setattr(self.knobs, name, value)
        if not 0.0 <= self.knobs.fault_rate <= 1.0:
            raise AdminError(400, "fault_rate must lie between 0 and 1")
        self.limiter.reconfigure(self.knobs.rate_limit, self.knobs.burst)
        self.faults.rate = self.knobs.fault_rate
        return self.knob_values()

    def knob_values(self) -> dict:
        k = self.knobs
        return {"latency_ms": k.latency_ms, "rate_limit": k.rate_limit, "burst": k.burst,
                "fault_rate": k.fault_rate, "token_ttl": k.token_ttl,
                "malformed_json_next": k.malformed_json_next,
                "forbidden_projects": list(k.forbidden_projects), "search_lag_s": k.search_lag_s,
                **asdict(self.paging_knobs)}

