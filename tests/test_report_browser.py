"""The HTML report in a real browser: headless Chromium loads every embedded figure and renders the page.

Skipped where no ``chromium`` is on the PATH (Debian/Ubuntu: ``apt-get install -y chromium``).
The page is opened from a file with the network off; a small script appended to a copy of it
writes, once the page has loaded, each image's ``complete`` and natural size into the DOM, which
``--dump-dom`` returns. A deliberately broken image is appended as a control, so the check is
known to catch an image that does not decode. A screenshot shows that the page renders: it must not
be blank.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on the PATH (Debian/Ubuntu: apt-get install -y chromium)")

CHECK_SCRIPT = """
<img id="broken-control" src="data:image/png;base64,iVBORw0KGgoAAAAAAAA" alt="control">
<script>
window.addEventListener("load", function () {
  var result = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, id: img.id, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium(*arguments, user_data_dir):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={user_data_dir}",
               "--virtual-time-budget=10000", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    from test_report import make_inputs, run_report

    from spectral_anomaly.score import read_scores, write_scores
    from spectral_anomaly.thresholds import add_threshold_flags

    root = tmp_path_factory.mktemp("browser")
    inputs, _ = make_inputs(root / "in")
    for path in inputs["scores"].values():
        table, info = add_threshold_flags(read_scores(path), false_positive_rates=[0.1, 0.01])
        write_scores(table, path, kind=table.attrs["model_kind"], primary=table.attrs["primary_score"], thresholds=info)
    _, arguments = run_report(root, inputs)
    return root, arguments["html_path"]


def test_every_image_of_the_report_loads_in_chromium(report_page, tmp_path):
    from spectral_anomaly.report import FIGURE_NAMES
    from spectral_anomaly.report.registry import FIGURES

    _, html_path = report_page
    page = html_path.read_text(encoding="ascii")
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="ascii")
    dom = chromium("--dump-dom", checked.as_uri(), user_data_dir=tmp_path / "profile").stdout
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the check script did not run; DOM starts with: " + dom[:300]
    images = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    control = [image for image in images if image["id"] == "broken-control"]
    figures = [image for image in images if image["id"] != "broken-control"]
    assert control and control[0]["width"] == 0, "the broken control image loaded: the check cannot tell"
    assert [image["alt"] for image in figures] == [FIGURES[name].title for name in FIGURE_NAMES]
    for image in figures:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image


def test_the_report_renders_a_non_blank_page(report_page, tmp_path):
    from PIL import Image

    _, html_path = report_page
    screenshot = tmp_path / "page.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,2400", html_path.as_uri(),
             user_data_dir=tmp_path / "profile")
    image = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert image.shape == (2400, 1280)
    ink = image < 200  # text, table borders, figure content
    assert ink.mean() > 0.02, f"only {ink.mean():.2%} of the page is drawn on"
    assert image.std() > 20
    # the figures are there too: the page's lower part (below the tables) has colour
    rgb = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.int16)
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    assert saturated.mean() > 0.002, "no coloured pixels: figures not drawn"
