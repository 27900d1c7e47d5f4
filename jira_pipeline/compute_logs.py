"""Dagster's local compute logs, mirrored to the terminal by a thread instead of four processes.

dagster.yaml names `ThreadMirroredComputeLogManager` (`compute_logs:`). It is Dagster's
`LocalComputeLogManager`, the same files in the same places ($DAGSTER_HOME/storage by default),
read by the webserver the same way, except for how a run's stdout and stderr are also shown
where the run was started (the terminal of `dagster asset materialize`, the run worker's log).

Why: Dagster points the process's file descriptors 1 and 2 at the log files and mirrors each
file with a `tail -F` child, plus a Python child per `tail` that kills it if the run's process
dies first: four processes a run, 25 MB of its process tree (two interpreters of 10.7 MB each),
the same at every N, and two interpreter start-ups. Here the descriptors point at the same
files, and one daemon thread of the run's process copies what they gain to the original
descriptors: a thread needs no orphan watcher, since it dies with its process.

What stays as Dagster wrote it: the output goes to the file first, at the descriptor level, so
a child process's output, C code's and a crashing interpreter's last words (faulthandler) are
in the log even when the mirror never ran; the mirror only echoes them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, Any

from dagster import Field, StringSource
from dagster._core.instance.ref import compute_logs_directory
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import (
    IO_TYPE_EXTENSION,
    LocalComputeLogManager,
)
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

# How often the mirror looks for new output: `tail -F` looks once a second.
POLL_INTERVAL_S = 0.1
READ_SIZE = 1 << 16


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


class _Mirror:
    """Copies what is appended to the file at `path` from now on to the descriptor `echo_fd`
    (which it owns) until stopped, then what is left."""

    def __init__(self, path: str, echo_fd: int) -> None:
        self.echo_fd = echo_fd
        # Opened at its end here, not in the thread: what the block writes once this returns
        # is mirrored, however late the thread starts; what the file held before is not.
        self.source = open(path, "rb")  # closed by the thread
        self.source.seek(0, os.SEEK_END)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"compute-log-mirror {path}",
                                       daemon=True)

    def _copy_available(self, source: IO[bytes]) -> None:
        while chunk := source.read(READ_SIZE):
            try:
                _write_all(self.echo_fd, chunk)
            except OSError:
                return  # the terminal went away: the log file still has everything

    def _run(self) -> None:
        try:
            with self.source:
                while not self.stopping.wait(POLL_INTERVAL_S):
                    self._copy_available(self.source)
                self._copy_available(self.source)
        finally:
            os.close(self.echo_fd)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


@contextmanager
def mirrored_to_file(stream: Any, path: str) -> Iterator[None]:
    """Point `stream`'s descriptor at the file `path` (appending) for the block and echo what
    the file gains to the descriptor's previous target. A stream without a descriptor (a test
    runner's capture) is left as it is, as Dagster leaves it."""
    ensure_file(path)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    stream.flush()
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    original = os.dup(fd)
    mirror = _Mirror(path, os.dup(original))
    mirror.start()
    try:
        os.dup2(log_fd, fd)
        try:
            yield
        finally:
            stream.flush()
            os.dup2(original, fd)
    finally:
        os.close(log_fd)
        os.close(original)
        mirror.stop()


class ThreadMirroredComputeLogManager(LocalComputeLogManager):
    """Dagster's `LocalComputeLogManager` (same files, same reading, same subscriptions) whose
    capture mirrors the logs to the terminal with a thread, not `tail -F` processes. Config:
    `base_dir` as Dagster's, or `dagster_home` for Dagster's default under it
    (`$DAGSTER_HOME/storage`, where an instance without `compute_logs:` keeps them)."""

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "base_dir": Field(StringSource, is_required=False),
            "dagster_home": Field(StringSource, is_required=False),
            "polling_timeout": Field(float, is_required=False),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> ThreadMirroredComputeLogManager:
        values = dict(config_value)
        home = values.pop("dagster_home", None)
        if "base_dir" not in values:
            if home is None:
                raise ValueError("compute_logs: ThreadMirroredComputeLogManager needs "
                                 "`base_dir` or `dagster_home` in its config")
            values["base_dir"] = compute_logs_directory(home)
        return cls(inst_data=inst_data, **values)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        with ExitStack() as streams:
            for stream, io_type in ((sys.stdout, ComputeIOType.STDOUT),
                                    (sys.stderr, ComputeIOType.STDERR)):
                path = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[io_type])
                streams.enter_context(mirrored_to_file(stream, path))
            yield CapturedLogContext(log_key)
        # Left on the file system, as Dagster's does: the capture is complete.
        touch_file(self.complete_artifact_path(log_key))
