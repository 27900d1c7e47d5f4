"""Start a fake Jira in a background thread on a free port: `with run_fake_jira(cfg) as fake:`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from jira_pipeline.fakejira.admin import FakeJiraAdmin
from jira_pipeline.fakejira.app import build_app
from jira_pipeline.fakejira.config import FakeJiraConfig
from jira_pipeline.fakejira.site import FakeJiraSite


class FakeJiraStartError(RuntimeError):
    """The fake did not come up (port taken, bad TLS files...)."""


@dataclass
class FakeJiraHandle:
    base_url: str
    cloud_id: str
    config: FakeJiraConfig
    admin: FakeJiraAdmin
    site: FakeJiraSite  # in-process state: read it only while no request is in flight


def uvicorn_config(site: FakeJiraSite, *, tls_cert: str | None = None,
                   tls_key: str | None = None, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        build_app(site),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        timeout_keep_alive=30,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound socket for uvicorn; FakeJiraStartError names the address when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; without it a socket handed to uvicorn keeps Nagle on
    # and every small answer waits ~40 ms for the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise FakeJiraStartError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # Listening now (uvicorn would later) queues clients that connect as soon as the URL is out.
    sock.listen(2048)
    return sock


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        # Signals belong to the main thread (pytest, the demo); this server stops via should_exit.
        return None


@contextmanager
def run_fake_jira(config: FakeJiraConfig | None = None, *, host: str = "127.0.0.1",
                  port: int = 0, tls_cert: str | None = None,
                  tls_key: str | None = None) -> Iterator[FakeJiraHandle]:
    """Serve a fake Jira until the block ends; port 0 picks a free one."""
    config = config or FakeJiraConfig()
    site = FakeJiraSite(config)
    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = _ThreadedServer(uvicorn_config(site, tls_cert=tls_cert, tls_key=tls_key))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name=f"fake-jira-{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise FakeJiraStartError("the fake Jira did not start (see the log above)")
        time.sleep(0.01)
    scheme = "https" if tls_cert else "http"
    base_url = f"{scheme}://{host}:{bound_port}"
    admin = FakeJiraAdmin(base_url, verify=False if tls_cert else True)
    try:
        yield FakeJiraHandle(base_url, site.cloud_id, config, admin, site)
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
