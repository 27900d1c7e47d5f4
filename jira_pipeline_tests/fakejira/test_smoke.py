"""Smoke tests of the fake Jira as a client sees it: it starts, authenticates and pages."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jira_pipeline.cli import main
from jira_pipeline.fakejira import FakeJiraConfig, run_fake_jira
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms


def _client(fake) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, auth=(fake.config.email, fake.config.api_token))


def test_myself_answers_the_configured_user_with_time_zone(fake_jira_factory):
    fake = fake_jira_factory(issues=5, user_timezone="Pacific/Tongatapu")
    with _client(fake) as client:
        me = client.get("/rest/api/3/myself").json()
    assert me["emailAddress"] == fake.config.email
    assert me["timeZone"] == "Pacific/Tongatapu"


def test_wrong_api_token_is_refused_with_401(fake_jira):
    with httpx.Client(base_url=fake_jira.base_url, auth=(fake_jira.config.email, "nope")) as c:
        response = c.get("/rest/api/3/myself")
    assert response.status_code == 401
    assert response.json()["errorMessages"]


def test_search_jql_pages_every_issue_once_by_token(fake_jira):
    seen: list[str] = []
    token = None
    with _client(fake_jira) as client:
        while True:
            body = {"jql": "project in (CORE, WEB, OPS, DATA, MOB) ORDER BY updated ASC",
                    "maxResults": 7, "fields": ["updated"]}
            if token:
                body["nextPageToken"] = token
            page = client.post("/rest/api/3/search/jql", json=body).json()
            seen += [issue["key"] for issue in page["issues"]]
            if page["isLast"]:
                assert "nextPageToken" not in page
                break
            token = page["nextPageToken"]
    assert sorted(seen) == sorted(issue["key"] for issue in fake_jira.admin.issues())
    assert len(seen) == len(set(seen))


def test_touched_issue_enters_an_epoch_ms_window_after_the_clock(fake_jira):
    admin = fake_jira.admin
    window_start = to_epoch_ms(admin.advance_clock(3600))
    key = admin.issues()[0]["key"]
    touched = admin.touch_issue(key, {"summary": "renamed"})
    assert to_epoch_ms(parse_jira_datetime(touched["updated"])) >= window_start
    with _client(fake_jira) as client:
        page = client.get("/rest/api/3/search/jql", params={
            "jql": f"updated >= {window_start}", "fields": "summary",
            "expand": "changelog"}).json()
    assert [issue["key"] for issue in page["issues"]] == [key]
    issue = page["issues"][0]
    assert issue["fields"]["summary"] == "renamed"
    assert issue["changelog"]["histories"][-1]["items"][0]["toString"] == "renamed"


def test_removed_search_endpoint_answers_410(fake_jira):
    with _client(fake_jira) as client:
        assert client.get("/rest/api/3/search", params={"jql": "project = CORE"}).status_code == 410


def _self_signed_pair(directory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(tz=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_files_make_the_fake_serve_https(tmp_path):
    cert, key = _self_signed_pair(tmp_path)
    with run_fake_jira(FakeJiraConfig(issues=3), tls_cert=cert, tls_key=key) as fake:
        assert fake.base_url.startswith("https://")
        with httpx.Client(base_url=fake.base_url, verify=False,
                          auth=(fake.config.email, fake.config.api_token)) as client:
            assert client.get("/rest/api/3/serverInfo").json()["deploymentType"] == "Cloud"


def test_same_seed_and_clock_give_the_same_bytes(fake_jira_factory):
    bodies = []
    for _ in range(2):
        fake = fake_jira_factory(issues=40, seed=3)
        with _client(fake) as client:
            body = client.get("/rest/api/3/search/jql", params={
                "jql": "created >= 0 ORDER BY key ASC", "fields": "*all",
                "expand": "changelog", "maxResults": 100}).content
        # Self links name the fake's port; everything else must repeat byte for byte.
        bodies.append(body.replace(fake.base_url.encode(), b"BASE"))
    assert bodies[0] == bodies[1]
    assert len(bodies[0]) > 10_000


def test_fake_jira_command_prints_its_url_and_serves_until_stopped():
    process = subprocess.Popen(
        [sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0", "--issues", "30",
         "--seed", "7", "--now", "2026-01-15T12:00:00Z", "--mode", "datacenter"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        base = process.stdout.readline().rsplit(" ", 1)[-1].strip()
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer demo-pat"}) as client:
            for _ in range(100):
                try:
                    body = client.get("/rest/api/2/search", params={"jql": "created >= 0"}).json()
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        assert body["total"] == 30
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_fake_jira_command_names_a_bad_time_zone(capsys):
    assert main(["fake-jira", "--user-timezone", "Mars/Olympus_Mons", "--port", "0"]) == 2
    assert "--user-timezone" in capsys.readouterr().err
