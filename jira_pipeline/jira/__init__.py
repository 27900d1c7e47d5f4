"""Talking to Jira: client, auth, rate limiting, pagination, JQL and models."""
