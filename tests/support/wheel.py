"""The pricefeed wheel, built from a clean copy of the checkout's sources."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "pricefeed", "templates", "static")


def build_wheel(out: Path) -> Path:
    """A wheel built from a clean copy of the sources in out/source (no stale build/ from an earlier run)."""
    source = out / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out / "dist"), str(source)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (out / "dist").glob("pricefeed-*.whl")
    return wheel
