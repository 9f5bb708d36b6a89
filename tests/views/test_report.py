"""`report`: PNG plots and one page that holds them, opened with no network."""

from __future__ import annotations

import struct

import pytest

from tests.conftest import run_hpsearch


@pytest.mark.slow
def test_report_pngs_and_a_self_contained_page(real_study):
    out = real_study / "report"
    result = run_hpsearch("report", "--study", "views", "--out", str(out), cwd=real_study)
    assert result.returncode == 0, result.stderr
    pngs = sorted(out.glob("*.png"))
    # Every plot but importances (one parameter, one complete trial: nothing to rank) is drawn.
    assert {p.stem for p in pngs} >= {
        "optimization_history",
        "intermediate_values",
        "parallel_coordinate",
        "slice",
    }
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300
    page = (out / "report.html").read_text()
    # It opens with no network: no URL to fetch, every image inline.
    assert "http://" not in page and "https://" not in page and 'src="//' not in page
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "views" in page and "Intermediate values" in page
    # Every trial trained at batch 16 without accumulation: the page says so.
    assert (
        "<th>effective batch</th><td>16 examples per optimizer step (best trial); 16 across "
        "trials</td>" in page
    )
