"""The fake's seeded Jira site: projects, statuses, users and compactly stored issues."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jira_pipeline.fakejira.config import FakeJiraConfig
from jira_pipeline.timeutil import to_epoch_ms

if TYPE_CHECKING:
    from jira_pipeline.fakejira.comments import CommentLedger

DAY_MS = 86_400_000
MINUTE_MS = 60_000

# (id, key, name, colorName) as Jira Cloud numbers its three status categories.
STATUS_CATEGORIES: dict[str, tuple[int, str, str, str]] = {
    "TODO": (2, "new", "To Do", "blue-gray"),
    "IN_PROGRESS": (4, "indeterminate", "In Progress", "yellow"),
    "DONE": (3, "done", "Done", "green"),
}

GLOBAL_STATUSES: tuple[tuple[str, str, str], ...] = (
    ("10000", "To Do", "TODO"),
    ("3", "In Progress", "IN_PROGRESS"),
    ("10001", "In Review", "IN_PROGRESS"),
    ("10002", "Done", "DONE"),
    ("10003", "Won't Do", "DONE"),
)
SCOPED_STATUS_NAMES = ("Blocked", "Triage", "QA", "Awaiting Customer", "Ready for Release")

# (id, name, subtask, hierarchyLevel)
ISSUE_TYPES: tuple[tuple[str, str, bool, int], ...] = (
    ("10000", "Epic", False, 1),
    ("10001", "Story", False, 0),
    ("10002", "Task", False, 0),
    ("10003", "Bug", False, 0),
    ("10004", "Sub-task", True, -1),
)
EPIC, SUBTASK = 0, 4

PRIORITIES: tuple[tuple[str, str, str], ...] = (
    ("1", "Highest", "#d04437"),
    ("2", "High", "#f15C75"),
    ("3", "Medium", "#f79232"),
    ("4", "Low", "#707070"),
    ("5", "Lowest", "#999999"),
)

# (id, name, description); issues resolved in a DONE status carry the first.
RESOLUTIONS: tuple[tuple[str, str, str], ...] = (
    ("10000", "Done", "Work has been completed on this issue."),
    ("10001", "Won't Do", "This issue won't be actioned."),
    ("10002", "Duplicate", "The problem is a duplicate of an existing issue."),
    ("10003", "Cannot Reproduce", "All attempts at reproducing this issue failed."),
)

PROJECT_WORDS = (
    ("CORE", "Core Platform"), ("WEB", "Web Storefront"), ("OPS", "Operations"),
    ("DATA", "Data Warehouse"), ("MOB", "Mobile Apps"), ("INFRA", "Infrastructure"),
    ("PAY", "Payments"), ("HELP", "Help Desk"), ("MKT", "Marketing Site"),
    ("API", "Public API"), ("SEC", "Security"), ("DOCS", "Documentation"),
)
PROJECT_TYPES = ("software", "service_desk", "business")
CATEGORIES = (("10000", "Engineering", "Product engineering teams"),
              ("10001", "Business", "Customer-facing business teams"))

# Varied, including the UTC-8 and UTC+13 extremes the JQL time-zone trap is about.
TIME_ZONES = (
    "UTC", "America/Los_Angeles", "Pacific/Tongatapu", "Europe/Berlin", "Asia/Kolkata",
    "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kathmandu",
)
# Offsets (minutes) that issue timestamps are written in: Jira renders in varying zones.
RENDER_OFFSETS = (0, 60, -480, 330, 780, -300, 345, 120, -180, 600)

FIRST_NAMES = ("Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances",
               "Edsger", "Radia", "Dennis", "Katherine", "Tim", "Hedy", "Donald", "Sophie")
LAST_NAMES = ("Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson",
              "Allen", "Dijkstra", "Perlman", "Ritchie", "Johnson", "Berners-Lee", "Lamarr")
APP_NAMES = ("Automation for Jira", "Slack", "GitHub for Jira", "Jira Service Management Widget")

WORDS = ("checkout", "login", "cache", "report", "export", "invoice", "search", "index",
         "timeout", "latency", "dashboard", "webhook", "migration", "backup", "token", "queue",
         "retry", "pagination", "schema", "locale", "upload", "billing", "alert", "sync")
VERBS = ("Fix", "Add", "Improve", "Remove", "Refactor", "Investigate", "Document", "Speed up")
LABELS = ("backend", "frontend", "customer", "tech-debt", "security", "performance", "ux", "infra")
OPTIONS = (("10100", "Low impact"), ("10101", "Medium impact"), ("10102", "High impact"))
TEAMS = (("10200", "Alpha"), ("10201", "Bravo"), ("10202", "Charlie"), ("10203", "Delta"))


# One changed field of a history: (field, fieldtype, fieldId, from, fromString, to, toString).
HistoryItem = tuple[str, str, str, str | None, str | None, str | None, str | None]


@dataclass
class User:
    account_id: str
    display_name: str
    account_type: str  # "atlassian" or "app"
    active: bool
    email: str | None
    time_zone: str
    name: str  # the Data Center username

    @property
    def key(self) -> str:
        """The Data Center user key (stable when the username changes)."""
        return f"JIRAUSER{self.name}"


@dataclass
class Project:
    id: str
    key: str
    name: str
    type_key: str
    category: tuple[str, str, str] | None
    lead: int  # index into users
    components: tuple[tuple[str, str], ...]
    versions: tuple[tuple[str, str, bool], ...]  # (id, name, released)


@dataclass
class Status:
    id: str
    name: str
    category: str  # TODO | IN_PROGRESS | DONE
    project: int | None  # index into projects when project-scoped


@dataclass
class History:
    id: str
    author: int
    created_ms: int
    offset: int
    items: tuple[HistoryItem, ...]


class Issue:
    """One issue, held as small integers and short strings; rendered to JSON only when asked."""

    __slots__ = (
        "assignee", "children", "comments", "components", "created", "custom", "deleted",
        "extra_histories", "fix_version", "id", "key", "key_num", "labels", "num", "offset",
        "overrides", "parent", "priority", "project", "raw_fields", "reporter", "resolved",
        "seed", "seeded", "seeded_status", "status", "summary", "type", "updated", "version",
        "worklogs",
    )

    def __init__(self) -> None:
        self.children: list[int] | None = None
        self.extra_histories: list[History] | None = None
        self.overrides: dict | None = None
        # Field values served exactly as set (None: the field is left out), for tests of odd
        # data: `labels` as a string, no `updated`, ...
        self.raw_fields: dict | None = None
        self.deleted = False
        self.version = 0

    num: int
    id: int
    key: str
    key_num: int
    project: int
    type: int
    status: int
    priority: int
    assignee: int
    reporter: int
    created: int
    updated: int
    seeded: int  # `updated` as generated: the generated past (comments, history) ends here
    seeded_status: int  # where the generated status walk ends; admin edits continue from it
    resolved: int
    offset: int
    labels: tuple[str, ...]
    components: tuple[int, ...]
    fix_version: int
    parent: int
    seed: int
    summary: str
    custom: tuple
    comments: int
    worklogs: int


@dataclass
class FieldDef:
    id: str
    name: str
    schema: dict
    navigable: bool = True
    orderable: bool = True
    searchable: bool = True
    clause_names: tuple[str, ...] = ()

    @property
    def custom(self) -> bool:
        return self.id.startswith("customfield_")


_CF = "com.atlassian.jira.plugin.system.customfieldtypes:"
FIELDS: tuple[FieldDef, ...] = (
    FieldDef("summary", "Summary", {"type": "string", "system": "summary"}),
    FieldDef("description", "Description", {"type": "string", "system": "description"}),
    FieldDef("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"},
             clause_names=("issuetype", "type")),
    FieldDef("project", "Project", {"type": "project", "system": "project"}),
    FieldDef("status", "Status", {"type": "status", "system": "status"}),
    FieldDef("priority", "Priority", {"type": "priority", "system": "priority"}),
    FieldDef("assignee", "Assignee", {"type": "user", "system": "assignee"}),
    FieldDef("reporter", "Reporter", {"type": "user", "system": "reporter"}),
    FieldDef("creator", "Creator", {"type": "user", "system": "creator"}),
    FieldDef("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}),
    FieldDef("components", "Components",
             {"type": "array", "items": "component", "system": "components"},
             clause_names=("component",)),
    FieldDef("fixVersions", "Fix versions",
             {"type": "array", "items": "version", "system": "fixVersions"},
             clause_names=("fixVersion",)),
    FieldDef("created", "Created", {"type": "datetime", "system": "created"},
             clause_names=("created", "createdDate")),
    FieldDef("updated", "Updated", {"type": "datetime", "system": "updated"},
             clause_names=("updated", "updatedDate")),
    FieldDef("resolutiondate", "Resolved", {"type": "datetime", "system": "resolutiondate"},
             clause_names=("resolutiondate", "resolved")),
    FieldDef("resolution", "Resolution", {"type": "resolution", "system": "resolution"}),
    FieldDef("statuscategorychangedate", "Status Category Changed",
             {"type": "datetime", "system": "statuscategorychangedate"}),
    FieldDef("duedate", "Due date", {"type": "date", "system": "duedate"},
             clause_names=("due", "duedate")),
    FieldDef("parent", "Parent", {"type": "issuelink", "system": "parent"}),
    FieldDef("subtasks", "Sub-tasks",
             {"type": "array", "items": "issuelinks", "system": "subtasks"},
             orderable=False, clause_names=("subtasks",)),
    FieldDef("issuelinks", "Linked Issues",
             {"type": "array", "items": "issuelinks", "system": "issuelinks"},
             orderable=False, clause_names=("issue",)),
    # Company-managed epics' children name their epic here on Data Center (Cloud: `parent`).
    FieldDef("customfield_10014", "Epic Link",
             {"type": "any", "custom": "com.pyxis.greenhopper.jira:gh-epic-link",
              "customId": 10014}),
    FieldDef("comment", "Comment", {"type": "comments-page", "system": "comment"},
             navigable=False, orderable=False),
    # Jira's catalog calls this an array, yet sends a page object; the fake names what it sends.
    FieldDef("worklog", "Log Work", {"type": "worklogs-page", "system": "worklog"},
             navigable=False, orderable=False),
    FieldDef("timetracking", "Time tracking", {"type": "timetracking", "system": "timetracking"},
             navigable=True, orderable=True, searchable=False),
    FieldDef("customfield_10016", "Story point estimate",
             {"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points",
              "customId": 10016}),
    FieldDef("customfield_10030", "Impact",
             {"type": "option", "custom": _CF + "select", "customId": 10030}),
    FieldDef("customfield_10031", "Teams",
             {"type": "array", "items": "option", "custom": _CF + "multiselect",
              "customId": 10031}),
    FieldDef("customfield_10032", "Reviewer",
             {"type": "user", "custom": _CF + "userpicker", "customId": 10032}),
    FieldDef("customfield_10033", "Target date",
             {"type": "date", "custom": _CF + "datepicker", "customId": 10033}),
    FieldDef("customfield_10034", "Affected services",
             {"type": "array", "items": "string", "custom": _CF + "labels", "customId": 10034}),
    FieldDef("customfield_10035", "Go-live",
             {"type": "datetime", "custom": _CF + "datetime", "customId": 10035}),
    FieldDef("customfield_10036", "Customer reference",
             {"type": "string", "custom": _CF + "textfield", "customId": 10036}),
    # Jira Software's sprint field (values and history: fakejira/agile.py).
    FieldDef("customfield_10020", "Sprint",
             {"type": "array", "items": "json", "custom": "com.pyxis.greenhopper.jira:gh-sprint",
              "customId": 10020}),
)
FIELD_IDS = tuple(f.id for f in FIELDS)
NAVIGABLE_FIELD_IDS = tuple(f.id for f in FIELDS if f.navigable)
FIELD_NAMES = {f.id: f.name for f in FIELDS}


def _account_id(rng: random.Random) -> str:
    # Cloud account ids look like "5b10ac8d82e05b22cc7d4ef5" (or "712020:<uuid>"); one form will do.
    return f"{rng.getrandbits(96):024x}"


@dataclass
class Dataset:
    """The site's content; `version` grows with every change so search caches know to refresh."""

    users: list[User]
    projects: list[Project]
    statuses: list[Status]
    issues: list[Issue]
    by_key: dict[str, Issue] = field(default_factory=dict)
    next_key_num: dict[int, int] = field(default_factory=dict)
    next_history_id: int = 1_000_000_000  # above every generated history id
    version: int = 0
    # Comments added, edited and deleted through the admin API (fakejira/comments.py).
    comment_ledger: CommentLedger | None = None
    # Custom fields moved to Jira's trash: /field no longer lists them (fakejira/field_trash.py).
    trashed_fields: set[str] = field(default_factory=set)
    # Reference rows (kind, id) removed from their listings (fakejira/reference.py).
    removed_reference: set[tuple[str, str]] = field(default_factory=set)
    history_range: tuple[int, int] | None = None  # FakeJiraConfig.histories
    worklog_book: Any = None  # fakejira.worklogs.WorklogBook, built on first use
    agile: Any = None  # fakejira.agile.AgileBook: boards, sprints, sprint histories
    link_book: Any = None  # fakejira.links.LinkBook, built on first use

    def index(self) -> None:
        self.by_key = {issue.key: issue for issue in self.issues}

    def project_statuses(self, project: int) -> list[int]:
        return [i for i, s in enumerate(self.statuses) if s.project in (None, project)]


def build_dataset(config: FakeJiraConfig, now: datetime) -> Dataset:
    """Generate the site deterministically from the seed, the sizes and the clock start."""
    rng = random.Random(config.seed)
    now_ms = to_epoch_ms(now)
    users = _build_users(rng, config)
    projects = _build_projects(rng, config, users)
    statuses = [Status(sid, name, cat, None) for sid, name, cat in GLOBAL_STATUSES]
    for p in range(len(projects)):
        name = SCOPED_STATUS_NAMES[p % len(SCOPED_STATUS_NAMES)]
        category = "IN_PROGRESS" if name != "Triage" else "TODO"
        statuses.append(Status(str(10100 + p), name, category, p))
    data = Dataset(users=users, projects=projects, statuses=statuses, issues=[],
                   history_range=config.histories)
    data.next_key_num = {p: 1 for p in range(len(projects))}
    # Assignable people: active humans; apps and inactive users still appear as reporters.
    humans = [i for i, u in enumerate(users) if u.account_type == "atlassian" and u.active]
    anyone = list(range(len(users)))
    status_choices = [data.project_statuses(p) for p in range(len(projects))]
    span = config.days * DAY_MS
    created_list = sorted(now_ms - rng.randrange(MINUTE_MS, span) for _ in range(config.issues))
    last_by_project: dict[int, list[int]] = {p: [] for p in range(len(projects))}
    epics_by_project: dict[int, list[int]] = {p: [] for p in range(len(projects))}
    for n, created in enumerate(created_list):
        p = rng.randrange(len(projects))
        issue = Issue()
        issue.num = n
        issue.id = 10_000 + n
        issue.project = p
        issue.key_num = data.next_key_num[p]
        data.next_key_num[p] += 1
        issue.key = f"{projects[p].key}-{issue.key_num}"
        candidates = last_by_project[p]
        roll = rng.random()
        if candidates and roll < 0.15:
            issue.type, issue.parent = SUBTASK, rng.choice(candidates[-50:])
        elif roll < 0.22:
            issue.type, issue.parent = EPIC, -1
        else:
            issue.type = rng.choice((1, 1, 2, 3))
            epics = epics_by_project[p]
            issue.parent = rng.choice(epics[-10:]) if epics and rng.random() < 0.5 else -1
        if issue.type == EPIC:
            epics_by_project[p].append(n)
        elif issue.type != SUBTASK:
            candidates.append(n)
        issue.status = issue.seeded_status = rng.choice(status_choices[p])
        issue.priority = rng.choice((0, 1, 2, 2, 2, 3, 4))
        issue.assignee = rng.choice(humans) if rng.random() < 0.8 else -1
        issue.reporter = rng.choice(anyone)
        issue.created = created
        # Updated lies after creation and at least a minute before the clock start.
        edited = created + int(rng.random() ** 2 * (now_ms - created))
        issue.updated = issue.seeded = max(min(now_ms - MINUTE_MS, edited), created)
        issue.resolved = (
            issue.updated - rng.randrange(0, 3_600_000) if statuses[issue.status].category == "DONE"
            else 0
        )
        issue.resolved = max(issue.resolved, created) if issue.resolved else 0
        issue.offset = rng.choice(RENDER_OFFSETS)
        issue.labels = tuple(sorted(rng.sample(LABELS, rng.choice((0, 0, 1, 1, 2, 3)))))
        ncomp = len(projects[p].components)
        issue.components = tuple(sorted(rng.sample(range(ncomp), rng.choice((0, 1, 1, 2)))))
        issue.fix_version = rng.randrange(len(projects[p].versions)) if rng.random() < 0.4 else -1
        issue.seed = rng.getrandbits(32)
        issue.summary = f"{rng.choice(VERBS)} {rng.choice(WORDS)} {rng.choice(WORDS)} handling"
        issue.custom = (
            rng.choice((None, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 0.5)),  # story points
            rng.choice((-1, 0, 1, 2)),  # impact option
            tuple(sorted(rng.sample(range(len(TEAMS)), rng.choice((0, 1, 2))))),  # teams
            rng.choice(humans) if rng.random() < 0.5 else -1,  # reviewer
            (created // DAY_MS + rng.randrange(1, 60)) if rng.random() < 0.5 else -1,  # target day
            tuple(sorted(rng.sample(WORDS, rng.choice((0, 1, 2))))),  # affected services
            (created + rng.randrange(DAY_MS, 30 * DAY_MS)) if rng.random() < 0.3 else 0,  # go-live
            f"CUST-{rng.randrange(1000, 9999)}" if rng.random() < 0.3 else None,  # reference
        )
        # A few long discussions, so the embedded comment/worklog pages come back truncated.
        heavy = rng.random() < 0.05
        issue.comments = rng.randrange(21, 40) if heavy else rng.choice((0, 0, 1, 2, 3, 5))
        issue.worklogs = rng.randrange(21, 30) if heavy else rng.choice((0, 0, 0, 1, 2))
        data.issues.append(issue)
    for issue in data.issues:
        if issue.parent >= 0:
            parent = data.issues[issue.parent]
            if issue.type == SUBTASK:
                if parent.children is None:
                    parent.children = []
                parent.children.append(issue.num)
    data.index()
    from jira_pipeline.fakejira.agile import build_agile

    data.agile = build_agile(data, config.seed, now_ms, config.days)
    return data


def _build_users(rng: random.Random, config: FakeJiraConfig) -> list[User]:
    users = [User(_account_id(rng), "Demo User", "atlassian", True, config.email,
                  config.user_timezone, "demo")]
    apps = max(1, config.users // 10) if config.users > 2 else 0
    for i in range(1, config.users):
        if i <= apps:
            name = APP_NAMES[(i - 1) % len(APP_NAMES)]
            if i > len(APP_NAMES):
                name = f"{name} {i}"
            users.append(User(_account_id(rng), name, "app", True, None, "UTC", f"app{i}"))
            continue
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        login = f"{first}.{last}{i}".lower().replace("-", "")
        # Some people hide their email address (Cloud privacy settings), some have left.
        email = f"{login}@example.com" if rng.random() < 0.8 else None
        users.append(User(_account_id(rng), f"{first} {last}", "atlassian", rng.random() > 0.12,
                          email, rng.choice(TIME_ZONES), login))
    humans = [u for u in users[1:] if u.account_type == "atlassian"]
    if len(humans) >= 3 and all(u.active for u in humans):
        # Every site has people who left; small seeded sites must too.
        humans[-1].active = False
    return users


def _build_projects(rng: random.Random, config: FakeJiraConfig, users: list[User]) -> list[Project]:
    leads = [i for i, u in enumerate(users) if u.account_type == "atlassian" and u.active]
    projects = []
    for p in range(config.projects):
        if p < len(PROJECT_WORDS):
            key, name = PROJECT_WORDS[p]
        else:
            key, name = f"P{p}", f"Project {p}"
        category = CATEGORIES[p % 2] if p % 3 != 2 else None
        pid = 10_000 + p
        components = tuple((str(10_000 + p * 10 + c), f"{rng.choice(WORDS).title()} {c}")
                           for c in range(3))
        versions = tuple((str(10_000 + p * 10 + v), f"{key.lower()}-1.{v}", v < 2)
                         for v in range(3))
        projects.append(Project(str(pid), key, name, PROJECT_TYPES[p % 3], category,
                                rng.choice(leads), components, versions))
    return projects
