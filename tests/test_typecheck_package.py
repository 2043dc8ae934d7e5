"""The whole package type-checks with mypy (pyproject's [tool.mypy] settings)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(),
                    reason="mypy is not installed (extra [dev])")
def test_mypy_is_clean_on_hil_af():
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "hil_af"], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
