"""Shared fixtures: the real data folder, CLI runner, exported test subjects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def data_dir() -> Path:
    """../shared/data beside the checkout (or $VCC_DATA); missing data is a failure, not a skip."""
    d = Path(os.environ.get("VCC_DATA", ROOT.parent / "shared" / "data"))
    if not (d / "images").is_dir():
        pytest.fail(f"test data not found at {d}: put ../shared beside the checkout or set VCC_DATA")
    return d


@pytest.fixture(scope="session")
def data() -> Path:
    return data_dir()


def run_cli(*args: str, check: int | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `vcc ARGS...` in a fresh process (exit codes and stderr as a user sees them)."""
    proc = subprocess.run([sys.executable, "-m", "vcc.driver.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"vcc {' '.join(map(str, args))} exited {proc.returncode}, expected {check}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def cli():
    return run_cli
