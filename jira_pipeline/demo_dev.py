"""`jira-pipeline dev`: `dg dev` on this project (or `dagster dev` on its code location when run
outside the project), optionally against the demo's fake."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import jira_pipeline
from jira_pipeline.demo import DEFAULT_DIR, DemoSite, demo_environment, query_command

# The code location's one name: workspace.yaml gives `dagster dev -w workspace.yaml` the same.
LOCATION_NAME = "jira_pipeline"
DEFINITIONS_MODULE = "jira_pipeline.definitions"
# The dg project this package belongs to (pyproject.toml with [tool.dg]), when installed from a
# checkout (`pip install -e .`, as `make install` does).
PROJECT_ROOT = Path(jira_pipeline.__file__).resolve().parents[1]
# How long `dagster dev` and its children get to stop after SIGTERM before they are killed
# (`dagster dev` 1.13 can wait on its code servers for minutes); a second Ctrl-C kills at once.
STOP_GRACE_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo", action="store_true",
        help="serve a fake Jira and use the demo's Dagster home and embedded store",
    )
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="demo folder (with --demo)")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("dagster_args", nargs=argparse.REMAINDER,
                        help="more arguments for `dg dev` (or `dagster dev`), after --")


def workspace_yaml(working_directory: Path) -> str:
    """The workspace `dagster dev` is given: the module under LOCATION_NAME, as workspace.yaml."""
    return (
        "load_from:\n"
        "  - python_module:\n"
        f"      module_name: {DEFINITIONS_MODULE}\n"
        f"      location_name: {LOCATION_NAME}\n"
        f"      working_directory: {json.dumps(str(working_directory))}\n"  # quoted YAML
    )


def run_in_own_group(command: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run `command` in a process group of its own and return its exit status.

    SIGTERM or SIGINT to this process is passed to the whole group (`dagster dev` with its
    webserver, daemon and code servers); whatever still runs STOP_GRACE_S after the first one
    (or at a second one) is killed. When the command ends, for whatever reason, what is left of
    its group is stopped the same way. Stopping `jira-pipeline dev` never leaves a server
    holding the UI port.
    """
    process = subprocess.Popen(list(command), env=env, start_new_session=True)
    group = process.pid  # the leader of a new session is its group's id
    stop_requested: list[float] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        _signal_group(group, signal.SIGKILL if stop_requested else signum)
        stop_requested.append(time.monotonic())

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if stop_requested and time.monotonic() - stop_requested[0] > STOP_GRACE_S:
                    _signal_group(group, signal.SIGKILL)
    finally:
        if process.poll() is None:  # we are leaving on an error of our own
            _signal_group(group, signal.SIGTERM)
        _stop_group(group, process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(group: int, sig: int) -> bool:
    """Send `sig` to the group; False when no process of it is left."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    return True


def _stop_group(group: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STOP_GRACE_S
    # The leader's children (webserver, daemon, code servers) may outlive it.
    alive = _signal_group(group, signal.SIGTERM)
    while alive and time.monotonic() < deadline:
        if process.poll() is None:
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.1)
        alive = _signal_group(group, 0)
    if alive:
        _signal_group(group, signal.SIGKILL)
    process.wait()


def in_dg_project(directory: Path) -> bool:
    """Whether `directory` is this package's dg project root (where `dg dev` finds it and
    where `.env` and `./.jira_pipeline` are read from, as `dagster dev` would there)."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if directory.resolve() != PROJECT_ROOT or not pyproject.is_file():
        return False
    dg_config = tomllib.loads(pyproject.read_text()).get("tool", {}).get("dg", {})
    return dg_config.get("directory_type") == "project" and Path(sys.executable).with_name(
        "dg"
    ).exists()


def dev_command(port: int, extra: Sequence[str], workspace: Path) -> list[str]:
    """`dg dev` in the project; elsewhere (an installed package, another working directory)
    `dagster dev` on `workspace`, which names the same module and location."""
    if in_dg_project(Path.cwd()):
        return [str(Path(sys.executable).with_name("dg")), "dev", "--target-path",
                str(PROJECT_ROOT), "-p", str(port), *extra]
    return [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-p", str(port),
            *extra]


def _dagster_dev(args: argparse.Namespace, folder: Path | None = None) -> int:
    extra = [a for a in args.dagster_args if a != "--"]
    with tempfile.TemporaryDirectory(prefix="jira-pipeline-dev-") as scratch:
        workspace = Path(folder or scratch) / "workspace.yaml"
        workspace.write_text(workspace_yaml(Path.cwd()))
        command = dev_command(args.port, extra, workspace)
        shown = command[2:] if command[0] == sys.executable else ["dg", *command[1:]]
        print("running:", " ".join(shown), flush=True)
        # dg compares the active virtualenv with the project's: this interpreter's is active.
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "VIRTUAL_ENV": sys.prefix,
               "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
        return run_in_own_group(command, env=env)


def run(args: argparse.Namespace) -> int:
    if not args.demo:
        return _dagster_dev(args)
    site = DemoSite(Path(args.dir))
    site.prepare(fresh=False)
    with demo_environment(site, site.record()) as fake:
        print(f"fake Jira at {fake.base_url} (clock from {fake.site.start.isoformat()}); "
              f"Dagster home {site.dagster_home}", flush=True)
        print(f"embedded store in {site.store_folder.resolve()}; query it with\n"
              f"  {query_command(site)}", flush=True)
        return _dagster_dev(args, site.folder)
