"""Text from configs and input files, shown as it is wherever the pipeline writes it.

Config values, file and object names and metadata are data: each output format gets them escaped
for its own markup, so none can become markup, template code or terminal control:

- :func:`visible`: control characters (and bidirectional overrides, which reorder what a reader
  sees) written as ``\\x1b``-style escapes; the base of every other function here;
- :func:`html_text`: HTML (the report page, ``compare --output x.html``);
- :func:`markdown_text`: Markdown (``compare`` and its ``.md`` output);
- :func:`rst_text` and :func:`template_text`: reStructuredText rendered as a Jinja template (the
  front page of ``snakemake --report``);
- :func:`plot_text`: matplotlib, where ``$`` would start mathtext.

:func:`counted` writes a count with its noun in the singular or plural (``1 thread``, ``2 threads``).
"""

from __future__ import annotations

import html
import re

#: plurals that are not the singular plus ``s``
_PLURALS = {"spectrum": "spectra", "entry": "entries"}

#: C0 and C1 control characters, DEL, and the Unicode bidirectional embedding, override and isolate marks
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_INVISIBLE_BUT_LINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: Markdown punctuation that can start markup (links, images, emphasis, code, HTML, tables, headings)
_MARKDOWN = re.compile(r"[\\`*\[\]<>|#!~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, its last word plural unless ``n`` is 1: ``counted(1, "epoch")`` is ``1 epoch``,
    ``counted(3, "training spectrum")`` is ``3 training spectra``."""
    if n == 1:
        return f"{n} {noun}"
    head, _, last = noun.rpartition(" ")
    return f"{n} {head + ' ' if head else ''}{_PLURALS.get(last, last + 's')}"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, *, lines: bool = False) -> str:
    """``value`` as text with every control character shown as an escape (``\\x1b``, ``\\u202e``).

    With ``lines`` newlines are kept (text shown as a block); otherwise they are escaped too.
    """
    pattern = _INVISIBLE_BUT_LINES if lines else _INVISIBLE
    return pattern.sub(lambda match: _escape(match.group()), str(value))


def html_text(value: object, quote: bool = True) -> str:
    """``value`` as HTML text: markup characters as entities, control characters visible, newlines kept."""
    return html.escape(visible(value, lines=True), quote=quote)


def markdown_text(value: object) -> str:
    """``value`` as one line of Markdown that shows it as it is.

    Every character that could start Markdown markup or raw HTML is backslash-escaped (CommonMark lets
    any ASCII punctuation be escaped), so a value can become neither a link, an image, emphasis, code,
    HTML nor a table cell border; an underscore inside a word is left alone (it starts no emphasis).
    """
    return _MARKDOWN.sub(lambda match: "\\" + match.group(), " ".join(visible(value).split()))


def rst_text(value: object) -> str:
    """``value`` as plain reStructuredText inline text: one line, every markup character escaped.

    A backslash before any character makes reStructuredText take it literally, so no value can become
    markup (emphasis, links, substitutions, roles) or, being one line, a directive.
    """
    text = " ".join(visible(value).split())
    return "".join(char if char.isalnum() or char == " " else "\\" + char for char in text)


def template_text(text: str) -> str:
    """``text`` such that rendering it as a Jinja template gives it back unchanged.

    Every brace is written as a Jinja expression of itself (``{{ '{' }}``), which cannot be closed or
    escaped from inside the text, so a brace from a config value can never start template code.
    """
    return re.sub(r"[{}]", lambda brace: "{{ '" + brace.group() + "' }}", text)


def plot_text(value: object) -> str:
    """``value`` as matplotlib text shown as it is: ``$`` escaped (it would start mathtext), controls visible."""
    return visible(value).replace("$", r"\$")
