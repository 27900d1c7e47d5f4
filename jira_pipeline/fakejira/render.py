"""Jira's JSON shapes for the fake's entities, built on demand from the compact dataset."""

from __future__ import annotations

import html
import random
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from jira_pipeline.fakejira.agile import sprint_field, with_sprint_histories
from jira_pipeline.fakejira.dataset import (
    FIELD_IDS,
    FIELD_NAMES,
    FIELDS,
    ISSUE_TYPES,
    OPTIONS,
    PRIORITIES,
    RESOLUTIONS,
    STATUS_CATEGORIES,
    SUBTASK,
    TEAMS,
    WORDS,
    Dataset,
    History,
    Issue,
    Project,
    Status,
    User,
)
from jira_pipeline.fakejira.history import generated_histories

EMBEDDED_COMMENTS = 20  # Jira embeds at most this many comments/worklogs in an issue
EMBEDDED_WORKLOGS = 20
EMBEDDED_HISTORIES = 100
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SENTENCES = (
    "Customers report that the {0} page shows stale data after a {1}.",
    "Steps to reproduce: open the {0} view, trigger a {1}, then refresh.",
    "Expected the {0} to finish within the {1} budget.",
    "This blocks the {0} rollout until the {1} is fixed.",
    "See the attached logs from the {0} service around the {1} spike.",
)


@lru_cache(maxsize=64)
def _zone(offset_minutes: int) -> timezone:
    return timezone(timedelta(minutes=offset_minutes))


@lru_cache(maxsize=65536)
def _local_hour(local_hours: int) -> str:
    return datetime.fromtimestamp(local_hours * 3600, UTC).strftime("%Y-%m-%dT%H:")


@lru_cache(maxsize=64)
def _offset_suffix(offset_minutes: int) -> str:
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{'-' if offset_minutes < 0 else '+'}{hours:02d}{minutes:02d}"


def jira_time(ms: int, offset_minutes: int) -> str:
    """`2025-01-15T09:30:12.345+0100`, the form every Jira timestamp takes."""
    # Rendering dominates search pages; the hour prefix is cached, the rest is arithmetic.
    local = ms + offset_minutes * 60_000
    return (f"{_local_hour(local // 3_600_000)}{local // 60_000 % 60:02d}:"
            f"{local // 1000 % 60:02d}.{local % 1000:03d}{_offset_suffix(offset_minutes)}")


def rendered_time(ms: int, offset_minutes: int) -> str:
    """The human form renderedFields use: `15/Jan/25 9:30 AM`."""
    local = datetime.fromtimestamp(ms / 1000, _zone(offset_minutes))
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    day = f"{local.day:02d}/{_MONTHS[local.month - 1]}/{local.year % 100:02d}"
    return f"{day} {hour}:{local.minute:02d} {half}"


def adf(paragraphs: list[str]) -> dict:
    """Atlassian Document Format, the rich-text tree Cloud v3 sends for descriptions/comments."""
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}
                    for text in paragraphs],
    }


def is_adf(value: object) -> bool:
    """Whether `value` is an Atlassian Document Format document (the root `doc` node)."""
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


def adf_text(doc: dict) -> str:
    """The text of an ADF document as v2 sends it: block nodes as paragraphs, blank-line apart."""
    def text_of(node: object) -> str:
        if not isinstance(node, dict):
            return ""
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        return "".join(text_of(child) for child in node.get("content") or [])

    blocks = [text_of(node) for node in doc.get("content") or []]
    return "\n\n".join(block for block in blocks if block)


def _html(text: dict | str) -> str:
    """Rich text (ADF or a v2 string) as the HTML renderedFields carries."""
    if isinstance(text, str):
        paragraphs = text.split("\n\n")
    else:
        paragraphs = [node["content"][0]["text"] for node in text.get("content", [])
                      if node.get("content")]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(_SENTENCES).format(rng.choice(WORDS), rng.choice(WORDS))
            for _ in range(count)]


class SiteRenderer:
    """Renders a dataset for one base URL; static parts (users, statuses...) are built once."""

    def __init__(self, data: Dataset, base: str, *, api: str = "3",
                 cloud: bool | None = None) -> None:
        self.data = data
        self.base = base
        self.api = api
        # Cloud serves v2 beside v3: Cloud's user shapes, v2's plain-text rich text.
        self.cloud = api == "3" if cloud is None else cloud
        self.rest = f"{base}/rest/api/{api}"
        self.users = [self.user(u) for u in data.users]
        self.statuses = [self.status(s) for s in data.statuses]
        self.priorities = [
            {"self": f"{self.rest}/priority/{pid}", "iconUrl": f"{base}/images/icons/priorities/"
             f"{name.lower()}.svg", "name": name, "id": pid}
            for pid, name, _color in PRIORITIES
        ]
        self.issue_types = [
            {"self": f"{self.rest}/issuetype/{tid}", "id": tid, "description": f"A {name.lower()}.",
             "iconUrl": f"{base}/images/icons/issuetypes/{name.lower()}.svg", "name": name,
             "subtask": subtask, "avatarId": 10300 + int(tid) % 100, "hierarchyLevel": level}
            for tid, name, subtask, level in ISSUE_TYPES
        ]
        self.project_refs = [self.project_ref(p) for p in data.projects]
        self.components = [
            [{"self": f"{self.rest}/component/{cid}", "id": cid, "name": name}
             for cid, name in p.components] for p in data.projects
        ]
        self.versions = [
            [{"self": f"{self.rest}/version/{vid}", "id": vid, "description": "",
              "name": name, "archived": False, "released": released}
             for vid, name, released in p.versions] for p in data.projects
        ]
        self.options = [{"self": f"{self.rest}/customFieldOption/{oid}", "value": value, "id": oid}
                        for oid, value in OPTIONS]
        self.teams = [{"self": f"{self.rest}/customFieldOption/{oid}", "value": value, "id": oid}
                      for oid, value in TEAMS]
        rid, rname, rdescription = RESOLUTIONS[0]
        self.resolution = {"self": f"{self.rest}/resolution/{rid}", "id": rid,
                           "description": rdescription, "name": rname}

    # --- reference data ---------------------------------------------------------------

    def avatars(self, kind: str, ident: str) -> dict:
        return {size: f"{self.base}/secure/{kind}avatar?size={name}&avatarId={ident}"
                for size, name in (("48x48", "large"), ("24x24", "small"),
                                   ("16x16", "xsmall"), ("32x32", "medium"))}

    def user(self, user: User) -> dict:
        """A user as Jira embeds it (UserDetails): in issues, histories and user lists."""
        body: dict[str, Any]
        if not self.cloud:
            body = {"self": f"{self.rest}/user?username={user.name}", "key": user.key,
                    "name": user.name}
        else:
            body = {"self": f"{self.rest}/user?accountId={user.account_id}",
                    "accountId": user.account_id}
        if user.email is not None:
            body["emailAddress"] = user.email
        body["avatarUrls"] = self.avatars("user", user.account_id[:8])
        body["displayName"] = user.display_name
        body["active"] = user.active
        body["timeZone"] = user.time_zone
        if self.cloud:
            body["accountType"] = user.account_type
        return body

    def listed_user(self, index: int) -> dict:
        """A user as /users/search and /myself send it (User: adds locale)."""
        return {**self.users[index], "locale": "en_US"}

    def myself(self, index: int) -> dict:
        body = self.listed_user(index)
        body["groups"] = {"size": 1, "items": []}
        body["applicationRoles"] = {"size": 1, "items": []}
        body["expand"] = "groups,applicationRoles"
        return body

    def status_category(self, category: str) -> dict:
        cid, key, name, color = STATUS_CATEGORIES[category]
        return {"self": f"{self.rest}/statuscategory/{cid}", "id": cid, "key": key,
                "colorName": color, "name": name}

    def status(self, status: Status) -> dict:
        """StatusDetails, as /status lists it and issues embed it."""
        body = {
            "self": f"{self.rest}/status/{status.id}",
            "description": f"Work that is {status.name.lower()}.",
            "iconUrl": f"{self.base}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": self.status_category(status.category),
        }
        if status.project is not None:
            body["scope"] = {"type": "PROJECT",
                             "project": {"id": self.data.projects[status.project].id}}
        return body

    def status_search_item(self, status: Status) -> dict:
        """JiraStatus, the /statuses/search shape."""
        scope: dict = {"type": "GLOBAL"}
        if status.project is not None:
            scope = {"type": "PROJECT", "project": {"id": self.data.projects[status.project].id}}
        return {"id": status.id, "name": status.name, "statusCategory": status.category,
                "scope": scope, "description": f"Work that is {status.name.lower()}."}

    def project_ref(self, project: Project) -> dict:
        body = {
            "self": f"{self.rest}/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": project.type_key,
            "simplified": False,
            "avatarUrls": self.avatars("project", project.id),
        }
        if project.category is not None:
            body["projectCategory"] = self.category(project.category)
        return body

    def category(self, category: tuple[str, str, str]) -> dict:
        cid, name, description = category
        return {"self": f"{self.rest}/projectCategory/{cid}", "id": cid, "name": name,
                "description": description}

    def project(self, index: int) -> dict:
        """A Project as /project/search lists it (expand-free defaults plus lead)."""
        project = self.data.projects[index]
        body = {
            "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
            **self.project_refs[index],
            "description": f"Everything about {project.name.lower()}.",
            "lead": self.users[project.lead],
            "style": "classic",
            "isPrivate": False,
            "properties": {},
        }
        return body

    def field_details(self) -> list[dict]:
        out = []
        for f in FIELDS:
            if f.id in self.data.trashed_fields:
                continue
            clause_names = list(f.clause_names or (f.id,))
            if f.custom:
                clause_names = [f.id, f"cf[{f.id.split('_')[1]}]", f.name]
            out.append({
                "id": f.id, "key": f.id, "name": f.name, "custom": f.custom,
                "orderable": f.orderable, "navigable": f.navigable, "searchable": f.searchable,
                "clauseNames": clause_names, "schema": dict(f.schema),
            })
        return out

    # --- issues -------------------------------------------------------------------------

    def issue_ref(self, issue: Issue) -> dict:
        """How a parent or sub-task is embedded: id, key and a few fields."""
        return {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.rest}/issue/{issue.id}",
            "fields": {
                "summary": self.summary(issue),
                "status": self.statuses[issue.status],
                "priority": self.priorities[issue.priority],
                "issuetype": self.issue_types[issue.type],
            },
        }

    @staticmethod
    def summary(issue: Issue) -> str:
        if issue.overrides and "summary" in issue.overrides:
            return issue.overrides["summary"]
        return issue.summary

    def rich_text(self, doc: Any) -> Any:
        """v3 sends rich text as ADF; v2 (Cloud and Data Center) as a plain wiki-markup string."""
        if self.api == "3" or not is_adf(doc):
            return doc
        return adf_text(doc)

    def description(self, issue: Issue) -> dict | str | None:
        if issue.overrides and "description" in issue.overrides:
            return self.rich_text(issue.overrides["description"])
        if issue.seed % 7 == 0:
            return None
        rng = random.Random(issue.seed)
        return self.rich_text(adf(_paragraphs(rng, 1 + issue.seed % 3)))

    def fields(self, issue: Issue) -> dict:
        """Every field of `issue`, as `fields=*all` returns them."""
        off = issue.offset
        data = self.data
        story_points, impact, teams, reviewer, target_day, services, go_live, reference = (
            issue.custom)
        parent = data.issues[issue.parent] if issue.parent >= 0 else None
        status = data.statuses[issue.status]
        fields: dict = {
            "statuscategorychangedate": jira_time(issue.resolved or issue.updated, off),
            "issuetype": self.issue_types[issue.type],
            "components": [self.components[issue.project][c] for c in issue.components],
            "project": self.project_refs[issue.project],
            "description": self.description(issue),
            "fixVersions": ([self.versions[issue.project][issue.fix_version]]
                            if issue.fix_version >= 0 else []),
            "resolution": self.resolution if status.category == "DONE" else None,
            "resolutiondate": jira_time(issue.resolved, off) if issue.resolved else None,
            "created": jira_time(issue.created, off),
            "updated": jira_time(issue.updated, off),
            "duedate": None,
            "priority": self.priorities[issue.priority],
            "labels": list(issue.labels),
            "assignee": self.users[issue.assignee] if issue.assignee >= 0 else None,
            "reporter": self.users[issue.reporter],
            "creator": self.users[issue.reporter],
            "status": self.statuses[issue.status],
            "summary": self.summary(issue),
            "subtasks": ([self.issue_ref(data.issues[c]) for c in issue.children
                          if not data.issues[c].deleted] if issue.children else []),
            "comment": self.comments(issue),
            "worklog": self.worklogs(issue),
            "timetracking": self.timetracking(issue),
            "customfield_10016": story_points,
            "customfield_10030": self.options[impact] if impact >= 0 else None,
            "customfield_10031": [self.teams[t] for t in teams] if teams else None,
            "customfield_10032": self.users[reviewer] if reviewer >= 0 else None,
            "customfield_10033": (datetime.fromtimestamp(target_day * 86400, UTC).date().isoformat()
                                  if target_day >= 0 else None),
            "customfield_10034": list(services),
            "customfield_10035": jira_time(go_live, off) if go_live else None,
            "customfield_10036": reference,
            "customfield_10020": sprint_field(self, issue),
        }
        from jira_pipeline.fakejira.links import issue_links  # it renders through us

        fields["issuelinks"] = issue_links(self, issue)
        # Data Center names an epic child's epic by key in Epic Link, not in `parent`.
        epic_link = parent is not None and issue.type != SUBTASK and not self.cloud
        fields["customfield_10014"] = parent.key if epic_link and parent is not None else None
        if parent is not None and not epic_link:
            fields["parent"] = self.issue_ref(parent)
        if issue.overrides:
            for name, value in issue.overrides.items():
                if name not in ("summary", "description", "status", "assignee", "labels",
                                "priority"):
                    fields[name] = value
        return fields

    def comments(self, issue: Issue, limit: int | None = EMBEDDED_COMMENTS) -> dict:
        """The issue's comment block (PageOfComments), oldest first: at most `limit` shown, with
        the admin API's additions, edits and deletions (fakejira/comments.py) applied."""
        ledger = self.data.comment_ledger
        if ledger is not None and issue.num in ledger.threads:
            return ledger.threads[issue.num].block(self, issue, limit)
        return self.generated_comments(issue, limit)

    def generated_comments(self, issue: Issue, limit: int | None = EMBEDDED_COMMENTS) -> dict:
        """The comments the seed gave the issue."""
        total = issue.comments
        shown = total if limit is None else min(total, limit)
        rng = random.Random(issue.seed ^ 0xC0FFEE)
        people = len(self.users)
        span = max(issue.seeded - issue.created, 1)
        comments = []
        for i in range(shown):
            author = self.users[rng.randrange(people)]
            at = issue.created + span * (i + 1) // (total + 1)
            comments.append({
                "self": f"{self.rest}/issue/{issue.id}/comment/{issue.id * 100 + i}",
                "id": str(issue.id * 100 + i),
                "author": author,
                "body": self.rich_text(adf(_paragraphs(rng, 1))),
                "updateAuthor": author,
                "created": jira_time(at, issue.offset),
                "updated": jira_time(at, issue.offset),
                "jsdPublic": True,
            })
            if (issue.id + i) % 9 == 4:  # some comments only a project role can see
                comments[-1]["visibility"] = {"type": "role", "value": "Developers",
                                              "identifier": "Developers"}
        return {"comments": comments, "self": f"{self.rest}/issue/{issue.id}/comment",
                "maxResults": shown, "total": total, "startAt": 0}

    def worklogs(self, issue: Issue, limit: int | None = EMBEDDED_WORKLOGS) -> dict:
        from jira_pipeline.fakejira.worklogs import worklog_book  # it renders through us

        logged = worklog_book(self.data).of(issue)
        total = len(logged)
        shown = logged if limit is None else logged[:limit]
        return {"startAt": 0, "maxResults": len(shown),
                "total": total, "worklogs": [self.worklog(w) for w in shown]}

    def worklog(self, worklog: Any) -> dict:
        from jira_pipeline.fakejira.worklogs import render_worklog

        return render_worklog(self, worklog)

    def timetracking(self, issue: Issue) -> dict:
        from jira_pipeline.fakejira.worklogs import timetracking, worklog_book

        return timetracking(worklog_book(self.data), issue)

    def histories(self, issue: Issue) -> list[History]:
        """The generated past of an issue (status walk ending where it is now) plus admin edits."""
        if self.data.history_range is not None:  # the `histories` knob: many per issue
            return (with_sprint_histories(self.data, issue, generated_histories(self.data, issue))
                    + (issue.extra_histories or []))
        rng = random.Random(issue.seed ^ 0xC4A9)
        statuses = self.data.statuses
        done: list[History] = []
        steps = issue.seed % 4
        if steps and issue.seeded > issue.created:
            pool = self.data.project_statuses(issue.project)
            walk = [rng.choice(pool) for _ in range(steps - 1)] + [issue.seeded_status]
            previous = 0  # "To Do"
            span = issue.seeded - issue.created
            for n, status_index in enumerate(walk):
                at = issue.created + span * (n + 1) // steps
                before, after = statuses[previous], statuses[status_index]
                done.append(History(
                    id=str(issue.id * 10 + n),
                    author=rng.randrange(len(self.data.users)),
                    created_ms=at,
                    offset=issue.offset,
                    items=(("status", "jira", "status", before.id, before.name,
                            after.id, after.name),),
                ))
                previous = status_index
        return with_sprint_histories(self.data, issue, done) + (issue.extra_histories or [])

    def history(self, history: History) -> dict:
        return {
            "id": history.id,
            "author": self.users[history.author],
            "created": jira_time(history.created_ms, history.offset),
            # The OpenAPI document types these as strings, never null: absent values are left out.
            "items": [
                {name: value for name, value in (
                    ("field", f), ("fieldtype", ftype), ("fieldId", fid), ("from", a),
                    ("fromString", b), ("to", c), ("toString", d)) if value is not None}
                for f, ftype, fid, a, b, c, d in history.items
            ],
        }

    def changelog(self, issue: Issue) -> dict:
        histories = self.histories(issue)
        # Cloud embeds the first 100; Data Center embeds the whole changelog.
        shown = histories[:EMBEDDED_HISTORIES] if self.cloud else histories
        return {"startAt": 0, "maxResults": len(shown), "total": len(histories),
                "histories": [self.history(h) for h in shown]}

    def rendered(self, issue: Issue, fields: dict) -> dict:
        """renderedFields: HTML for rich text, human dates, null for the rest."""
        out: dict = dict.fromkeys(fields)
        for name in ("created", "updated", "resolutiondate", "statuscategorychangedate"):
            if fields.get(name):
                ms = {"created": issue.created, "updated": issue.updated,
                      "resolutiondate": issue.resolved}.get(name, issue.resolved or issue.updated)
                out[name] = rendered_time(ms, issue.offset)
        if fields.get("description"):
            out["description"] = _html(fields["description"])
        if "comment" in fields:
            block = fields["comment"]
            out["comment"] = {**block, "comments": [{**c, "body": _html(c["body"])}
                                                    for c in block["comments"]]}
        return out

    def issue(self, issue: Issue, wanted: tuple[str, ...] | None, expand: frozenset[str]) -> dict:
        """One IssueBean; `wanted` None means only the id (the search default)."""
        if wanted is None:
            return {"id": str(issue.id)}
        body: dict = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,"
                      "versionedRepresentations",
            "id": str(issue.id),
            "self": f"{self.rest}/issue/{issue.id}",
            "key": issue.key,
        }
        all_fields = self.fields(issue) if wanted else {}
        if len(wanted) == len(FIELD_IDS) and not issue.overrides and not issue.raw_fields:
            fields = all_fields
        else:
            fields = {name: all_fields[name] for name in wanted if name in all_fields}
            if issue.overrides:
                for name in wanted:
                    if name not in fields and name in issue.overrides:
                        fields[name] = issue.overrides[name]
            everything = len(wanted) == len(FIELD_IDS)
            for name, value in (issue.raw_fields or {}).items():
                if everything or name in wanted:
                    if value is None:
                        fields.pop(name, None)
                    else:
                        fields[name] = value
            if self.api != "3":
                # Rich text set through the admin API (environment, textarea custom fields)
                # is plain text in v2, as every generated rich-text field already is.
                for name, value in fields.items():
                    if is_adf(value):
                        fields[name] = adf_text(value)
        body["fields"] = fields
        if "renderedFields" in expand:
            body["renderedFields"] = self.rendered(issue, fields)
        if "names" in expand:
            body["names"] = {name: FIELD_NAMES.get(name, name) for name in fields}
        if "changelog" in expand:
            body["changelog"] = self.changelog(issue)
        return body

