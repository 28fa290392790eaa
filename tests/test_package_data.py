"""Every data file the package reads at run time is shipped in the wheel (pyproject package-data)."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_data_file_matches_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["safetext"]
    data_dirs = [ROOT / "safetext" / "policies", ROOT / "safetext" / "models"]
    files = [p for d in data_dirs if d.exists() for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.suffix == ".tsv" for p in files)  # the place gazetteer the default policy loads
    missing = [
        str(p.relative_to(ROOT)) for p in files
        if p.suffix != ".py" and not any(fnmatch.fnmatch(p.name, pattern.split("/")[-1]) for pattern in patterns)
    ]
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"
