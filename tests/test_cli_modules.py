"""`banyan` acts on the user's own service modules, and says so when one cannot be imported."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BANYAN = [sys.executable, "-m", "pipelines.cli"]
ROOT = Path(__file__).resolve().parent.parent


def banyan(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [*BANYAN, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


def test_the_cli_finds_a_service_module_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "library.py").write_text("from examples.orders.service import service\n")
    listed = banyan("--app", "library:app", "projections", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "order_summary" in listed.stdout


def test_a_service_module_that_fails_to_import_is_an_error_naming_why(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_dependency\n")
    listed = banyan("projections", "list", cwd=tmp_path, SERVICE_MODULES="broken")
    assert listed.returncode == 1
    assert "'broken'" in listed.stderr and "no_such_dependency" in listed.stderr
