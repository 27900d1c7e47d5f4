"""Talking to Jira: client, auth, rate limiting, pagination, JQL and models."""

from jira_pipeline.jira._exceptions import (
    JiraAuthError,
    JiraBadRequest,
    JiraError,
    JiraGatewayError,
    JiraHTTPError,
    JiraMalformedBody,
    JiraNotFound,
    JiraPaginationError,
    JiraPermissionError,
    JiraRateLimited,
    JiraResponseError,
    JiraServerError,
    JiraTokenError,
    JiraTransportError,
    JqlError,
)
from jira_pipeline.jira.auth import (
    BasicAuth,
    BearerPAT,
    JiraAuth,
    OAuth3LO,
    OAuthEndpoints,
    OAuthTokens,
    TokenLoader,
    TokenSaver,
)
from jira_pipeline.jira.bridge import EventLoopThread, iterate_blocking, run_sync, shared_loop
from jira_pipeline.jira.client import ClientCounters, JiraClient, merge_pages
from jira_pipeline.jira.jql import IssueWindow, build_issue_jql, fence_user_jql, project_clause
from jira_pipeline.jira.models import IssueRecord, ProjectRecord, StatusRecord, UserRecord
from jira_pipeline.jira.ratelimit import RateLimiter
from jira_pipeline.jira.retry import RetryPolicy

__all__ = [
    "BasicAuth",
    "BearerPAT",
    "ClientCounters",
    "EventLoopThread",
    "IssueRecord",
    "IssueWindow",
    "JiraAuth",
    "JiraAuthError",
    "JiraBadRequest",
    "JiraClient",
    "JiraError",
    "JiraGatewayError",
    "JiraHTTPError",
    "JiraMalformedBody",
    "JiraNotFound",
    "JiraPaginationError",
    "JiraPermissionError",
    "JiraRateLimited",
    "JiraResponseError",
    "JiraServerError",
    "JiraTokenError",
    "JiraTransportError",
    "JqlError",
    "OAuth3LO",
    "OAuthEndpoints",
    "OAuthTokens",
    "ProjectRecord",
    "RateLimiter",
    "RetryPolicy",
    "StatusRecord",
    "TokenLoader",
    "TokenSaver",
    "UserRecord",
    "build_issue_jql",
    "fence_user_jql",
    "iterate_blocking",
    "merge_pages",
    "project_clause",
    "run_sync",
    "shared_loop",
]
