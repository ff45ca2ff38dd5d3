"""Table cells of the report page: numbers, AUCs with their uncertainty and percentages, as escaped HTML."""

from __future__ import annotations

import math

from ..text import html_text as escape


def format_number(value: object, *, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``None``/NaN as an em dash; other values escaped as text."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return escape(str(value))
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return escape(str(value))
    if math.isnan(number):
        return "&mdash;"
    if math.isinf(number):
        return "&infin;" if number > 0 else "&minus;&infin;"
    if number.is_integer() and abs(number) < 1e15 and not isinstance(value, float):
        return str(int(number))
    return f"{number:.{digits}f}"


def _cell(value: object, *, best: bool = False) -> str:
    numeric = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    classes = " ".join(c for c in ("num" if numeric else "", "best" if best else "") if c)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{format_number(value)}</td>"


def _auc_cell(value: float | None, std: float | None, *, best: bool) -> str:
    """An AUC with its bootstrap standard deviation, e.g. ``0.953 &plusmn; 0.004``."""
    cell = _cell(value, best=best)
    if value is None or std is None:
        return cell
    return cell.replace("</td>", f" &plusmn; {format_number(std)}</td>")


def _percent_cell(value: float | None, *, best: bool = False) -> str:
    text = "&mdash;" if value is None or math.isnan(value) else f"{100.0 * value:.2f}%"
    return f'<td class="num best">{text}</td>' if best else f'<td class="num">{text}</td>'
