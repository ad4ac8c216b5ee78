"""The report's one self-contained HTML page: sections, tables, notes, and figures written as
PNGs and embedded from the same bytes."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from astrovader.analysis import figures


class Page:
    """Collects sections of HTML; figures are written as PNGs and embedded from the same bytes."""

    def __init__(self, out: Path):
        self.out = out
        self.sections: list[tuple[str, list[str]]] = []
        self.figure_count = 0

    def section(self, title: str) -> list[str]:
        self.sections.append((title, []))
        return self.sections[-1][1]

    def figure(self, name: str, figure, caption: str) -> str:
        data = figures.save_figure(figure, self.out / f"{name}.png")
        self.figure_count += 1
        encoded = base64.b64encode(data).decode("ascii")
        return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    @staticmethod
    def table(frame: pd.DataFrame, caption: str = "", index: bool = True) -> str:
        body = frame.to_html(index=index, border=0, na_rep="-", float_format=lambda value: f"{value:.3g}")
        return f"<p class='caption'>{html.escape(caption)}</p>{body}" if caption else body

    @staticmethod
    def note(text: str) -> str:
        return f"<p class='note'>{html.escape(text)}</p>"

    def render(self, title: str, header: str) -> str:
        contents = "".join(
            f"<li><a href='#s{i}'>{html.escape(name)}</a></li>" for i, (name, _) in enumerate(self.sections)
        )
        body = "".join(
            f"<section id='s{i}'><h2>{html.escape(name)}</h2>{''.join(parts)}</section>"
            for i, (name, parts) in enumerate(self.sections)
        )
        return (
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{header}"
            f"<nav><ol>{contents}</ol></nav>{body}</body></html>\n"
        )


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}"
    "th,td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}"
    "figure{margin:1em 0}img{max-width:100%}figcaption,.caption{font-size:0.85em;color:#555}"
    ".note{color:#8a5a00}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:bold}"
)
