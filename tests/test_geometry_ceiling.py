"""benchmarks/geometry_ceiling.py: the perfect-swap SSIM ceiling of the glyph image geometry."""

from __future__ import annotations

import json

import pytest
import torch


def test_geometry_ceiling_benchmark(tmp_path):
    """The perfect-swap ceiling: identical words keep SSIM 1, and a larger canvas around the same sign keeps more."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "geometry_ceiling.py"
    finished = subprocess.run([sys.executable, str(script), "--pairs", "6", "--results", str(tmp_path)],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    rows = json.loads((tmp_path / "geometry_ceiling.json").read_text())["rows"]
    assert [row["canvas"] for row in rows] == [[64, 128], [96, 192], [128, 256], [192, 384]]
    means = [row["any length"]["mean_ssim"] for row in rows]
    assert all(0.5 < m < 1.0 for m in means) and means == sorted(means)  # more scene around the sign, more kept
    assert rows[0]["sign_share"] == 24 * 96 / (64 * 128) and rows[1]["pixels_vs_shipped"] == 2.25
    assert "| 64 x 128 (shipped) |" in (tmp_path / "geometry_ceiling.md").read_text()

    from safetext.models.glyph.data import rendered_word_swap
    from safetext.scoring import ssim

    same = rendered_word_swap("stop", "stop", "red", 3, (24, 96), (64, 128))
    assert torch.equal(same[0], same[1]) and float(ssim(*same)) == pytest.approx(1.0)
