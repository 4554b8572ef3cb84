"""Every file a package keeps under ``src/`` ships in its wheel.

The tests run against editable installs, which read files straight from the
tree; the images install wheels. A data file left out of a wheel (a default
settings file, a contract artifact, a migration) breaks only the image, so
build each wheel here and compare its contents with the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
SKIPPED_PARTS = {"__pycache__", "node_modules"}


def shipped_sources(package: Path) -> set[str]:
    src = package / "src"
    return {
        f.relative_to(src).as_posix()
        for f in src.rglob("*")
        if f.is_file()
        and not SKIPPED_PARTS & set(f.parts)
        and not f.name.endswith((".pyc", ".egg-info"))
        and ".egg-info" not in f.as_posix()
    }


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_the_wheel_holds_every_source_file(package: Path, tmp_path: Path) -> None:
    # Build from a clean copy, as the image does: an editable install leaves an
    # egg-info whose file list would otherwise hide what package-data omits.
    copy = tmp_path / package.name
    shutil.copytree(
        package, copy, ignore=shutil.ignore_patterns("*.egg-info", "build", "node_modules", "tests")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(copy),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if ".dist-info/" not in n}
    missing = shipped_sources(package) - names
    assert not missing, f"{package.name}: left out of the wheel: {sorted(missing)}"
