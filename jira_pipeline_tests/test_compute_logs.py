"""The repo's dagster.yaml captures a run's stdout and stderr as Dagster's local compute logs do
(the same files, which the UI reads), mirrored to the terminal by a thread of the run's process:
no `tail -F` or watcher processes (`jira_pipeline/compute_logs.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jira_pipeline.compute_logs import ThreadMirroredComputeLogManager, mirrored_to_file

REPO = Path(__file__).parents[1]

# The step prints through Python, through its descriptors (as C code does) and from a child,
# and notes which processes it has while its output is captured.
ASSETS = '''
import os, subprocess, sys
from pathlib import Path
import dagster as dg

@dg.asset
def chatty() -> None:
    print("python stdout line", flush=True)
    print("python stderr line", file=sys.stderr, flush=True)
    os.write(1, b"descriptor stdout line\\n")
    subprocess.run(["sh", "-c", "echo child stdout line; echo child stderr line >&2"], check=True)
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    Path(os.environ["CHILDREN_FILE"]).write_text(" ".join(children))
    sys.stdout.write("unflushed last line\\n")

defs = dg.Definitions(assets=[chatty])
'''

LINES = {"out": ["python stdout line", "descriptor stdout line", "child stdout line",
                 "unflushed last line"],
         "err": ["python stderr line", "child stderr line"]}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_a_cli_run_logs_and_mirrors_its_output_without_helper_processes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "chatty_defs.py").write_text(ASSETS)
    children = tmp_path / "children"
    env = {**os.environ, "DAGSTER_HOME": str(home), "CHILDREN_FILE": str(children),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
         "chatty_defs", "--select", "chatty"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    # Mirrored where the run was started, stdout to stdout and stderr to stderr.
    for line in LINES["out"]:
        assert line in done.stdout, line
    for line in LINES["err"]:
        assert line in done.stderr, line
    # While capturing, the run's process had no helper: `sh` had exited, and no tail/watcher.
    assert children.read_text() == ""
    # Logged where Dagster's LocalComputeLogManager logs them by default, complete.
    [out] = (home / "storage").glob("*/compute_logs/*.out")
    [err] = out.parent.glob("*.err")
    assert [line for line in out.read_text().splitlines() if line in LINES["out"]] == LINES["out"]
    assert [line for line in err.read_text().splitlines() if line in LINES["err"]] == LINES["err"]
    assert list(out.parent.glob("*.complete"))


def test_the_instance_files_use_it_under_dagster_home() -> None:
    for name in ("dagster.yaml", "dagster.postgres.yaml"):
        config = yaml.safe_load((REPO / name).read_text())["compute_logs"]
        assert config == {"module": "jira_pipeline.compute_logs",
                          "class": "ThreadMirroredComputeLogManager",
                          "config": {"dagster_home": {"env": "DAGSTER_HOME"}}}, name
    manager = ThreadMirroredComputeLogManager.from_config_value(None, {"dagster_home": "/h"})
    assert manager._base_dir == os.path.join("/h", "storage")
    with pytest.raises(ValueError, match="base_dir"):
        ThreadMirroredComputeLogManager.from_config_value(None, {})


def test_the_mirror_echoes_only_what_the_block_wrote(tmp_path: Path) -> None:
    log, echo = tmp_path / "step.out", tmp_path / "terminal"
    log.write_text("an earlier step's line\n")
    with open(echo, "w") as terminal:
        with mirrored_to_file(terminal, str(log)):
            os.write(terminal.fileno(), b"x" * 200_000 + b"\n")
            terminal.write("the last line\n")  # in Python's buffer until the block ends
        terminal.write("after the block\n")
    assert log.read_text() == "an earlier step's line\n" + "x" * 200_000 + "\nthe last line\n"
    assert echo.read_text() == "x" * 200_000 + "\nthe last line\nafter the block\n"
