"""The knobs of one fake Jira instance: dataset sizes, credentials, limits and the clock start."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Mode = Literal["cloud", "datacenter"]
Paging = Literal["keyset", "offset"]


@dataclass(frozen=True)
class FakeJiraConfig:
    """Everything that decides what a fake Jira serves; the dataset depends on (seed, now, sizes).

    `now` is where the fake's clock starts (an aware datetime); None means the wall clock when the
    fake starts, so pin it wherever bytes must repeat.
    """

    seed: int = 1
    projects: int = 5
    users: int = 50
    issues: int = 2000
    days: int = 90
    email: str = "demo@example.com"
    api_token: str = "demo-token"
    pat: str = "demo-pat"
    user_timezone: str = "UTC"
    latency_ms: float = 0
    rate_limit: float = 0.0
    burst: int = 20
    fault_rate: float = 0.0
    token_ttl: int = 3600
    mode: Mode = "cloud"
    oauth_client_id: str = "demo-client-id"
    oauth_client_secret: str = "demo-client-secret"
    now: datetime | None = None
    forbidden_projects: tuple[str, ...] = field(default=())
    # Data Center user search: at most `dc_user_search_cap` users per answer whatever maxResults
    # asks (Jira DC 10 answers at most 100), and at most `dc_user_search_limit` matches in all
    # (DC stops listing after its first 1,000 matches: later pages are empty).
    dc_user_search_cap: int = 1000
    dc_user_search_limit: int = 1000
    # What a Cloud nextPageToken remembers: the last sort key (keyset: edits during a walk
    # neither skip nor repeat) or an offset into the results (pages shift under edits).
    paging: Paging = "keyset"
    # Histories per issue, drawn per issue from [low, high] (issue 13's changelog benchmark uses
    # (10, 300)); None: the small generated past, zero to three status changes an issue.
    histories: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("cloud", "datacenter"):
            raise ValueError(f"mode must be 'cloud' or 'datacenter', not {self.mode!r}")
        if self.paging not in ("keyset", "offset"):
            raise ValueError(f"paging must be 'keyset' or 'offset', not {self.paging!r}")
        if min(self.projects, self.users) < 1 or self.issues < 0 or self.days < 1:
            raise ValueError("projects, users and days must be >= 1 and issues >= 0")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if min(self.dc_user_search_cap, self.dc_user_search_limit) < 1:
            raise ValueError("dc_user_search_cap and dc_user_search_limit must be >= 1")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must lie between 0 and 1")
        if self.histories is not None and not 0 <= self.histories[0] <= self.histories[1] <= 999:
            raise ValueError("histories must be (low, high) with 0 <= low <= high <= 999")
