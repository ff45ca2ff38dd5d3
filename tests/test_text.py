"""Config and file text is shown as it is in every output format (src/spectral_anomaly/text.py)."""

from __future__ import annotations

import jinja2
import pytest
from docutils.core import publish_parts

from spectral_anomaly.text import html_text, markdown_text, plot_text, rst_text, template_text, visible

PAYLOAD = "{{ 7 * 7 }}{% raw %}<b>x</b> *e* `c` [l](javascript:x) ![i](http://x/i.png) |t| _u_ $m$ \x1b[31m\u202e"


def test_control_characters_and_bidi_marks_become_visible_escapes():
    assert visible("a\x1b[31mb\x9bc\u202ed\n") == "a\\x1b[31mb\\x9bc\\u202ed\\x0a"
    assert visible("line 1\nline 2", lines=True) == "line 1\nline 2"


def test_html_text_shows_markup_as_text():
    assert html_text(PAYLOAD).count("<") == 0 and "&lt;b&gt;x&lt;/b&gt;" in html_text(PAYLOAD)
    assert "\x1b" not in html_text(PAYLOAD) and "\\x1b" in html_text(PAYLOAD)


def test_markdown_text_escapes_every_markup_start():
    text = markdown_text(PAYLOAD)
    for raw in ("<b>", "*e*", "`c`", "[l](", "![i]", "|t|", "_u_"):
        assert raw not in text
    assert markdown_text("flag_fpr_1pct in training.device") == "flag_fpr_1pct in training.device"


def test_rst_and_jinja_text_render_back_to_the_payload():
    rendered = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template_text(rst_text(PAYLOAD))).render()
    body = publish_parts(rendered, writer="html", settings_overrides={"report_level": 5})["body"]
    assert "{{ 7 * 7 }}{% raw %}&lt;b&gt;x&lt;/b&gt; *e* `c` [l](javascript:x)" in body
    assert "<em>" not in body and "<a " not in body and "49" not in body


@pytest.mark.parametrize("value", ["$x$", "cost in $", "a $\\frac{1}{0}$ b"])
def test_plot_text_never_starts_mathtext(value):
    from matplotlib.figure import Figure

    figure = Figure()
    figure.add_subplot().set_xlabel(plot_text(value))
    figure.canvas.draw()  # mathtext would fail on the unbalanced or broken expressions
    assert figure.axes[0].get_xlabel().replace("\\$", "$") == value


def test_counted_writes_the_singular_for_one_and_the_plural_otherwise():
    from spectral_anomaly.text import counted

    assert [counted(n, "thread") for n in (0, 1, 2)] == ["0 threads", "1 thread", "2 threads"]
    assert counted(1, "spectrum") == "1 spectrum" and counted(5, "training spectrum") == "5 training spectra"
    assert counted(3, "entry") == "3 entries" and counted(1, "epoch") == "1 epoch"
