"""The report's blocks written as Markdown (figures as files beside it) and as one self-contained
HTML page (figures inline as data URIs, the style inline, no script). The text blocks hold the
Markdown subset lth-sweep's own renderers write (`summary.render_markdown`, `paper_table.markdown`):
paragraphs, pipe tables, **bold**, `code` and [links](url); it is turned into HTML here, so both
files say the same thing from one source."""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass(frozen=True)
class Preformatted:
    text: str
    fold: str = ""  # in HTML: folded away under this line


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown pipe table."""
    def line(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def to_markdown(blocks: list, folder: Path) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Markdown):
            out.append(block.text.strip())
        elif isinstance(block, Preformatted):
            out.append(f"{block.fold}\n\n```text\n{block.text.rstrip()}\n```" if block.fold else f"```text\n{block.text.rstrip()}\n```")
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}]({block.path.relative_to(folder).as_posix()})")
    return "\n\n".join(out) + "\n"


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #ddd; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d0d0; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.n, th.n { text-align: right; white-space: nowrap; }
td a { word-break: break-all; }
h1 code { font-size: inherit; }
td strong { color: #0a5d00; }
code, pre { font: 12.5px/1.35 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: .7rem; overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
details summary { cursor: pointer; color: #333; }
"""


def to_html(blocks: list, title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{inline(block.text)}</h{block.level}>")
        elif isinstance(block, Markdown):
            body.append(markdown_html(block.text))
        elif isinstance(block, Preformatted):
            pre = f"<pre>{html.escape(block.text.rstrip())}</pre>"
            body.append(f"<details><summary>{inline(block.fold)}</summary>{pre}</details>" if block.fold else pre)
        elif isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            caption = html.escape(block.caption)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")
_CELL_BORDER = re.compile(r"(?<!\\)\|")
#: a cell right-aligned: "0.4180 ± 0.0276 (2)", "87.5%", "3/3", "+0.0234", "0.91 -> 0.85", "-"
_NUMBER = re.compile(r"^(\*\*)?([-+]?\d[\d.,%/]*( ± [\d.]+)?( \(\d+\))?( -> [-+]?[\d.]+)?|-)(\*\*)?$")


def markdown_html(text: str) -> str:
    """The Markdown subset above as HTML: a paragraph whose lines all start with `|` is a table."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.strip().splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):
            out.append(_table_html(lines))
        elif lines:
            out.append(f"<p>{inline(' '.join(line.strip() for line in lines))}</p>")
    return "\n".join(out)


def _table_html(lines: list[str]) -> str:
    header, *rows = [_cells(line) for line in lines if not _SEPARATOR.match(line.strip())]
    numeric = [bool(rows) and all(_NUMBER.match(row[i]) for row in rows if i < len(row)) for i in range(len(header))]

    def cell(tag: str, text: str, column: int) -> str:
        number = ' class="n"' if (numeric[column] if tag == "th" else _NUMBER.match(text)) else ""
        return f"<{tag}{number}>{inline(text)}</{tag}>"

    head = "" if not any(header) else "<thead><tr>" + "".join(cell("th", text, i) for i, text in enumerate(header)) + "</tr></thead>"
    body = "".join("<tr>" + "".join(cell("td", text, i) for i, text in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in _CELL_BORDER.split(line.strip().strip("|"))]


def inline(text: str) -> str:
    """Escaped text with `code`, **bold** and [text](http(s) url) as HTML."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', escaped)
