"""Memory bounds of a run that can be checked without timing anything: what a run imports and
how many records a write holds at once (`benchmarks/memory_bench.py` prints the figures)."""

from __future__ import annotations

import subprocess
import sys


def test_storage_layer_and_client_load_without_pandas() -> None:
    # pandas (with numpy) is about 45 MB of a run's RSS; only a DataFrame input needs it.
    code = (
        "import sys\n"
        "import jira_pipeline.storage.io_manager, jira_pipeline.storage.upserts\n"
        "import jira_pipeline.jira.client, jira_pipeline.assets.streams\n"
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
