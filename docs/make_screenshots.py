"""Screenshots of a report for docs/: headless Chromium at 1280 px, cropped per section.

Usage: .venv/bin/python docs/make_screenshots.py results/<version>/reports/demo_hdf5.html docs
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

from PIL import Image

Image.MAX_IMAGE_PIXELS = None
html = pathlib.Path(sys.argv[1]).resolve()
out = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
work = pathlib.Path("/tmp/report-screenshots")
shutil.rmtree(work, ignore_errors=True)
work.mkdir()
base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={work/'ud'}", "--virtual-time-budget=10000"]
script = """<script>window.addEventListener("load",function(){var r={height:document.documentElement.scrollHeight,h2:{}};
document.querySelectorAll("h2").forEach(function(h){r.h2[h.id]=h.getBoundingClientRect().top+window.scrollY;});
var p=document.createElement("pre");p.id="pos";p.textContent=JSON.stringify(r);document.body.appendChild(p);});</script></body>"""
probe = work / "probe.html"
probe.write_text(html.read_text().replace("</body>", script))
dom = subprocess.run(base + ["--window-size=1280,1000", "--dump-dom", probe.as_uri()], capture_output=True, text=True, check=True).stdout
pos = json.loads(re.search(r'<pre id="pos">(.*?)</pre>', dom, re.DOTALL).group(1).replace("&quot;", '"'))
print(pos)
height = int(pos["height"]) + 20
shot = work / "full.png"
subprocess.run(base + [f"--window-size=1280,{height}", f"--screenshot={shot}", html.as_uri()], capture_output=True, check=True)
full = Image.open(shot).convert("RGB")
print(full.size)
h2 = pos["h2"]
def crop(name, start, end):
    top, bottom = int(max(start - 10, 0)), int(min(end - 10, full.size[1]))
    full.crop((0, top, 1280, bottom)).save(out / name, optimize=True)
    print(name, bottom - top)
crop("report-top.png", 0, h2["thresholds"])
crop("report-thresholds.png", h2["thresholds"], h2["roc"])  # with the efficiency per anomaly kind
crop("report-roc.png", h2["roc"], h2["precision_recall"])
crop("report-precision-recall.png", h2["precision_recall"], h2["score_distributions"])
crop("report-score-agreement.png", h2["score_agreement"], h2["run_summary"])
crop("report-runs.png", h2["run_summary"], h2["top_anomalies"])
crop("report-top-anomalies.png", h2["top_anomalies"], h2["top_anomalies"] + 1050)
