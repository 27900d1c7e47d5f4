"""The JQL the fake understands: parser and evaluator for what sync tools send, Jira's errors.

Date strings are read in the searching user's time zone at minute granularity, exactly the trap
real Jira sets: `updated >= "2025-01-15 10:00"` means 10:00 wherever that user lives. Epoch
milliseconds are exact and zone-free.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from jira_pipeline.fakejira.dataset import ISSUE_TYPES, Dataset, Issue

UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
_OPERATORS = "'=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'"
_DATE_FORMATS = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', "
    "'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|!~|=|<|>|~)
      | (?P<punct>[(),])
      | (?P<word>[^\s"'(),=!<>~]+)
    )""",
    re.VERBOSE,
)
_DATE_STRING = re.compile(
    r"^(?P<y>\d{4})[-/](?P<mo>\d{1,2})[-/](?P<d>\d{1,2})(?:\s+(?P<h>\d{1,2}):(?P<mi>\d{2}))?$"
)
_PERIOD = re.compile(r"^([-+]?)\s*((?:\d+\s*[wdhm]\s*)+)$")
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm])")
_PERIOD_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}

DATE_FIELDS = {"updated": "updated", "updateddate": "updated", "created": "created",
               "createddate": "created", "resolved": "resolved", "resolutiondate": "resolved"}
KEY_FIELDS = {"key", "issuekey", "id", "issue"}
SORTABLE = {"updated": "updated", "updateddate": "updated", "created": "created",
            "createddate": "created", "key": "key", "issuekey": "key", "id": "id"}


class JqlError(ValueError):
    """A query Jira would answer with 400; the message is Jira's own wording."""


class Unbounded(JqlError):
    def __init__(self) -> None:
        super().__init__(UNBOUNDED)


@dataclass(frozen=True)
class Token:
    kind: str  # string | op | punct | word
    text: str
    position: int

    @property
    def value(self) -> str:
        if self.kind == "string":
            return re.sub(r"\\(.)", r"\1", self.text[1:-1])
        return self.text


Predicate = Callable[[Issue], bool]


@dataclass(frozen=True)
class SearchContext:
    """What a date string or a name means depends on the site and on who is searching."""

    data: Dataset
    user_zone: ZoneInfo
    now_ms: int
    current_user: int  # index into users
    # Data Center's validateQuery=false: an issue that does not exist matches nothing instead
    # of failing the query.
    strict_values: bool = True


@dataclass
class Query:
    predicate: Predicate | None
    order: list[tuple[str, bool]]  # (field, descending)
    project_keys: set[str]  # projects the query names explicitly (permission checks)
    relative: bool = False  # depends on the clock (now(), -1d): results must not be cached

    def sort_key(self, issue: Issue, project_rank: dict[int, int]) -> tuple[int, ...]:
        parts: list[int] = []
        for name, descending in self.order:
            if name == "key":
                values = [project_rank[issue.project], issue.key_num]
            else:
                values = [getattr(issue, name)]
            parts.extend(-v if descending else v for v in values)
        # Issue id breaks ties so every issue has one place in the order (stable paging).
        last_descending = self.order[-1][1] if self.order else False
        parts.append(-issue.id if last_descending else issue.id)
        return tuple(parts)


def tokenize(jql: str) -> list[Token]:
    tokens, position = [], 0
    stripped = jql.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            column = position + 1
            raise JqlError(
                f"Error in the JQL Query: The character '{stripped[position]}' is a reserved JQL "
                "character. You must enclose it in a string or use the escape "
                f"'\\u{ord(stripped[position]):04x}' instead. (line 1, character {column})"
            )
        kind = match.lastgroup or "word"
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, jql: str, context: SearchContext) -> None:
        self.tokens = tokenize(jql)
        self.i = 0
        self.context = context
        self.project_keys: set[str] = set()
        self.relative = False

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def peek_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def peek_text(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting either a value, list or function "
                           "but got 'end of query'.")
        self.i += 1
        return token

    def error_at(self, token: Token, expecting: str) -> JqlError:
        return JqlError(f"Error in the JQL Query: {expecting} but got '{token.text}'. "
                        f"(line 1, character {token.position + 1})")

    def parse(self) -> Query:
        predicate = None
        if self.peek() is not None and not self.peek_word("order"):
            predicate = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.peek_word("order"):
            self.take()
            if not self.peek_word("by"):
                raise self.error_at(self.peek() or self.tokens[-1], "Expecting 'by'")
            self.take()
            order = self.order_list()
        token = self.peek()
        if token is not None:
            raise self.error_at(token, "Expecting either 'OR' or 'AND'")
        return Query(predicate, order, self.project_keys, self.relative)

    def order_list(self) -> list[tuple[str, bool]]:
        order = []
        while True:
            token = self.take()
            name = token.value.lower()
            if name not in SORTABLE:
                known = name in DATE_FIELDS or name in _CLAUSES
                raise JqlError(f"Not able to sort using field '{token.value}'." if known else
                               f"Field '{token.value}' does not exist or you do not have "
                               "permission to view it.")
            descending = False
            if self.peek_word("asc", "desc"):
                descending = self.take().text.lower() == "desc"
            order.append((SORTABLE[name], descending))
            if self.peek_text(","):
                self.take()
                continue
            return order

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.peek_word("or") or self.peek_text("||"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda issue: any(p(issue) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.peek_word("and") or self.peek_text("&&"):
            self.take()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda issue: all(p(issue) for p in parts)

    def not_expr(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: Expecting a field name but got 'end of query'.")
        if self.peek_word("not") or token.text == "!":
            self.take()
            inner = self.not_expr()
            return lambda issue: not inner(issue)
        if token.text == "(":
            self.take()
            inner = self.or_expr()
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise JqlError("Error in the JQL Query: Expecting ')' but got "
                               f"'{closing.text if closing else 'end of query'}'.")
            self.take()
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        field_token = self.take()
        if field_token.kind not in ("word", "string"):
            raise self.error_at(field_token, "Expecting a field name")
        name = field_token.value.lower()
        operator = self.operator()
        handler = _CLAUSES.get(name)
        if name in DATE_FIELDS:
            return self.date_clause(DATE_FIELDS[name], field_token.value, operator)
        if handler is None:
            raise JqlError(f"Field '{field_token.value}' does not exist or you do not have "
                           "permission to view it.")
        return handler(self, field_token.value, operator)

    def operator(self) -> str:
        token = self.take()
        if token.kind == "op":
            return token.text
        word = token.text.lower()
        if word == "in":
            return "in"
        if word == "not" and self.peek_word("in"):
            self.take()
            return "not in"
        if word == "is":
            if self.peek_word("not"):
                self.take()
                return "is not"
            return "is"
        raise JqlError(f"Error in the JQL Query: Expecting operator but got '{token.text}'. "
                       f"The valid operators are {_OPERATORS}. "
                       f"(line 1, character {token.position + 1})")

    def values(self, operator: str) -> list[Token]:
        if operator in ("in", "not in"):
            opening = self.take()
            if opening.text != "(":
                raise self.error_at(opening, "Expecting '('")
            items = []
            while True:
                items.append(self.value())
                separator = self.take()
                if separator.text == ")":
                    return items
                if separator.text != ",":
                    raise self.error_at(separator, "Expecting ',' or ')'")
        return [self.value()]

    def value(self) -> Token:
        token = self.take()
        if token.kind not in ("word", "string"):
            raise self.error_at(token, "Expecting either a value, list or function")
        if token.kind == "word" and self.peek_text("("):
            # A function call: only the argument-less ones sync tools use.
            self.take()
            closing = self.take()
            if closing.text != ")":
                raise self.error_at(closing, "Expecting ')'")
            return Token("function", token.text.lower(), token.position)
        return token

    # --- clauses -------------------------------------------------------------------------

    def date_clause(self, attribute: str, field_name: str, operator: str) -> Predicate:
        if operator in ("is", "is not"):
            empty = self.value()
            if empty.value.lower() not in ("empty", "null"):
                raise self.error_at(empty, "Expecting 'EMPTY' or 'NULL'")
            if operator == "is":
                return lambda issue: getattr(issue, attribute) == 0
            return lambda issue: getattr(issue, attribute) != 0
        if operator not in ("=", "!=", "<", "<=", ">", ">="):
            raise JqlError(f"The operator '{operator.upper()}' is not supported by the "
                           f"'{field_name}' field.")
        bound = self.date_value(self.value(), field_name)
        present = attribute == "resolved"
        compare = {
            "=": lambda v: v == bound, "!=": lambda v: v != bound, "<": lambda v: v < bound,
            "<=": lambda v: v <= bound, ">": lambda v: v > bound, ">=": lambda v: v >= bound,
        }[operator]
        if present:
            return lambda issue: issue.resolved != 0 and compare(issue.resolved)
        return lambda issue: compare(getattr(issue, attribute))

    def date_value(self, token: Token, field_name: str) -> int:
        """A JQL date as epoch milliseconds; strings in the searcher's zone, cut to the minute."""
        if token.kind == "function":
            self.relative = True
            if token.text == "now":
                return self.context.now_ms
            if token.text in ("startofday", "endofday"):
                local = datetime.fromtimestamp(self.context.now_ms / 1000, self.context.user_zone)
                start = local.replace(hour=0, minute=0, second=0, microsecond=0)
                if token.text == "endofday":
                    start += timedelta(days=1)
                return int(start.timestamp() * 1000) - (1 if token.text == "endofday" else 0)
            raise JqlError(f"Unable to find JQL function '{token.text}()'.")
        text = token.value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        match = _DATE_STRING.match(text)
        if match is not None:
            try:
                local = datetime(int(match["y"]), int(match["mo"]), int(match["d"]),
                                 int(match["h"] or 0), int(match["mi"] or 0),
                                 tzinfo=self.context.user_zone)
            except ValueError:
                raise self.bad_date(text, field_name) from None
            return int(local.timestamp() * 1000)
        period = _PERIOD.match(text)
        if period is not None:
            self.relative = True
            total = sum(int(n) * _PERIOD_UNIT_MS[u] for n, u in _PERIOD_PART.findall(period[2]))
            # Relative dates, like date strings, are truncated to the minute.
            moment = self.context.now_ms + (-total if period[1] == "-" else total)
            return moment - moment % 60_000
        raise self.bad_date(text, field_name)

    @staticmethod
    def bad_date(text: str, field_name: str) -> JqlError:
        return JqlError(f"Date value '{text}' for field '{field_name}' is invalid. {_DATE_FORMATS}")

    def membership(self, operator: str, field_name: str, resolve: Callable[[Token], set[int]],
                   attribute: Callable[[Issue], int]) -> Predicate:
        if operator not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{operator.upper()}' is not supported by the "
                           f"'{field_name}' field.")
        wanted: set[int] = set()
        for token in self.values(operator):
            wanted |= resolve(token)
        if operator in ("=", "in"):
            return lambda issue: attribute(issue) in wanted
        return lambda issue: attribute(issue) not in wanted

    def project_clause(self, field_name: str, operator: str) -> Predicate:
        projects = self.context.data.projects

        def resolve(token: Token) -> set[int]:
            text = token.value
            for index, project in enumerate(projects):
                if text.upper() == project.key or text == project.id or text == project.name:
                    self.project_keys.add(project.key)
                    return {index}
            raise JqlError(f"The value '{text}' does not exist for the field '{field_name}'.")

        return self.membership(operator, field_name, resolve, lambda issue: issue.project)

    def key_clause(self, field_name: str, operator: str) -> Predicate:
        data = self.context.data

        def lookup(token: Token) -> Issue | None:
            text = token.value.upper()
            issue = None
            if text.isdigit():
                number = int(text) - 10_000
                issue = data.issues[number] if 0 <= number < len(data.issues) else None
            else:
                issue = data.by_key.get(text)
            if issue is None or issue.deleted:
                if not self.context.strict_values:
                    return None
                raise JqlError(f"An issue with key '{token.value}' does not exist for field "
                               f"'{field_name}'.")
            return issue

        compare = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__}
        if operator in compare:
            op = compare[operator]
            bound = self.value()
            if field_name.lower() == "id" and bound.value.isdigit():
                # Ids compare as numbers across projects, whether or not that issue still
                # exists: what keyset paging (`id > last ORDER BY id`) relies on.
                number = int(bound.value)
                return lambda issue: op(issue.id, number)
            anchor = lookup(bound)
            if anchor is None:
                return lambda issue: False
            return lambda issue: issue.project == anchor.project and op(issue.key_num,
                                                                        anchor.key_num)

        def resolve(token: Token) -> set[int]:
            found = lookup(token)
            return set() if found is None else {found.id}

        return self.membership(operator, field_name, resolve, lambda issue: issue.id)

    def status_clause(self, field_name: str, operator: str) -> Predicate:
        statuses = self.context.data.statuses

        def resolve(token: Token) -> set[int]:
            found = {i for i, s in enumerate(statuses)
                     if token.value == s.id or token.value.lower() == s.name.lower()}
            if not found:
                raise JqlError(f"The value '{token.value}' does not exist for the field "
                               f"'{field_name}'.")
            return found

        return self.membership(operator, field_name, resolve, lambda issue: issue.status)

    def issuetype_clause(self, field_name: str, operator: str) -> Predicate:
        def resolve(token: Token) -> set[int]:
            found = {i for i, t in enumerate(ISSUE_TYPES)
                     if token.value == t[0] or token.value.lower() == t[1].lower()}
            if not found:
                raise JqlError(f"The value '{token.value}' does not exist for the field "
                               f"'{field_name}'.")
            return found

        return self.membership(operator, field_name, resolve, lambda issue: issue.type)

    def labels_clause(self, field_name: str, operator: str) -> Predicate:
        if operator in ("is", "is not"):
            self.value()
            if operator == "is":
                return lambda issue: not issue.labels
            return lambda issue: bool(issue.labels)
        if operator not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{operator.upper()}' is not supported by the "
                           f"'{field_name}' field.")
        wanted = {t.value for t in self.values(operator)}
        if operator in ("=", "in"):
            return lambda issue: bool(wanted.intersection(issue.labels))
        return lambda issue: not wanted.intersection(issue.labels)


_CLAUSES: dict[str, Callable[[_Parser, str, str], Predicate]] = {
    "project": _Parser.project_clause,
    "key": _Parser.key_clause,
    "issuekey": _Parser.key_clause,
    "issue": _Parser.key_clause,
    "id": _Parser.key_clause,
    "status": _Parser.status_clause,
    "issuetype": _Parser.issuetype_clause,
    "type": _Parser.issuetype_clause,
    "labels": _Parser.labels_clause,
}
def _user_clause(attribute: str) -> Callable[[_Parser, str, str], Predicate]:
    def clause(parser: _Parser, field_name: str, operator: str) -> Predicate:
        users = parser.context.data.users
        if operator in ("is", "is not"):
            empty = parser.value()
            if empty.value.lower() not in ("empty", "null"):
                raise parser.error_at(empty, "Expecting 'EMPTY' or 'NULL'")
            if operator == "is":
                return lambda issue: getattr(issue, attribute) < 0
            return lambda issue: getattr(issue, attribute) >= 0

        def resolve(token: Token) -> set[int]:
            if token.kind == "function" and token.text == "currentuser":
                return {parser.context.current_user}
            found = {i for i, u in enumerate(users)
                     if token.value in (u.account_id, u.name, u.email)}
            if not found:
                raise JqlError(f"The value '{token.value}' does not exist for the field "
                               f"'{field_name}'.")
            return found

        return parser.membership(operator, field_name, resolve,
                                 lambda issue: getattr(issue, attribute))

    return clause


_CLAUSES["assignee"] = _user_clause("assignee")
_CLAUSES["reporter"] = _user_clause("reporter")


def parse_jql(jql: str | None, context: SearchContext, *, require_bound: bool = True) -> Query:
    """Parse `jql`; JqlError (Jira's 400 wording) for anything the fake, or Jira, would refuse."""
    query = _Parser(jql or "", context).parse()
    if query.predicate is None and require_bound:
        raise Unbounded()
    return query
