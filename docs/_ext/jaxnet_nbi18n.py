"""The Chinese pages' downloadable notebook, in Chinese: the page's catalog applied to
the executed English notebook's Markdown cells (code cells and outputs untouched).

Sphinx translates the built page, not the notebook myst-nb writes, so without this the
Chinese download is the English notebook. Each Markdown cell is cut into the blocks
Sphinx's gettext builder makes messages of (a heading, a paragraph with its lines
joined, a list item, a table cell) and each block whose text is a msgid of the page's
catalog is replaced by its msgstr; anything else (a fenced block, a directive, a
string the catalog lacks) stays as it is. ``translate_notebook`` returns how many
blocks it translated and how many it looked up, so the caller can fall back to the
English notebook, labelled as such, when the catalog does not cover the page.
"""

from __future__ import annotations

import re
from pathlib import Path

_HEADING = re.compile(r"^(#{1,6}\s+)(.*?)\s*$")
_ITEM = re.compile(r"^(\s*(?:[*+-]|\d+[.)])\s+)(.*)$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})")


def load_catalog(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file (translated, not fuzzy entries only)."""
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        catalog = read_po(f)
    return {m.id: m.string for m in catalog
            if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def _unescape_number(text: str) -> str:
    # A numbered title's msgstr is escaped ("5\. 训练") so that MyST does not read a list.
    return re.sub(r"^(\d+)\\\.", r"\1.", text)


def _translate_markdown(source: str, catalog: dict[str, str], counts: list[int]) -> str:
    lines = source.split("\n")
    out: list[str] = []
    i = 0

    def lookup(text: str) -> str | None:
        counts[1] += 1
        found = catalog.get(text.strip())
        if found is not None:
            counts[0] += 1
        return found

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:  # a code block, kept as it is, or a directive, whose body is prose
            marker = fence.group(1)
            directive = line.strip()[len(marker):].startswith("{")
            out.append(line)
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            options = [b for b in body if directive and re.match(r"^\s*:[\w-]+:", b)]
            prose = body[len(options):] if body[:len(options)] == options else body
            if directive and prose and not any(_FENCE.match(b) for b in prose):
                out.extend(options)
                out.append(_translate_markdown("\n".join(prose), catalog, counts))
            else:
                out.extend(body)
            if i < len(lines):
                out.append(lines[i])
                i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            found = lookup(heading.group(2))
            out.append(heading.group(1) + (_unescape_number(found) if found else heading.group(2)))
            i += 1
            continue
        if line.lstrip().startswith("|"):  # a table row: each cell is a message
            cells = line.strip().strip("|").split("|")
            if all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in cells):
                out.append(line)
            else:
                new = []
                for cell in cells:
                    found = lookup(cell) if cell.strip() else None
                    new.append(f" {found} " if found else cell)
                out.append("|" + "|".join(new) + "|")
            i += 1
            continue
        if not line.strip():
            out.append(line)
            i += 1
            continue
        item = _ITEM.match(line)
        prefix, first = (item.group(1), item.group(2)) if item else ("", line)
        block = [first]
        i += 1
        indent = " " * len(prefix)
        while i < len(lines) and lines[i].strip() and not _FENCE.match(lines[i]) \
                and not _HEADING.match(lines[i]) and not _ITEM.match(lines[i]) \
                and not lines[i].lstrip().startswith("|"):
            block.append(lines[i].strip())
            i += 1
        found = lookup(" ".join(part.strip() for part in block))
        if found:
            out.append(prefix + found.replace("\n", "\n" + indent))
        else:
            out.append(prefix + first)
            out.extend((indent + part) if item else part for part in block[1:])
    return "\n".join(out)


def translate_notebook(notebook: dict, catalog: dict[str, str]) -> tuple[int, int]:
    """Translate ``notebook``'s Markdown cells in place; (blocks translated, looked up)."""
    counts = [0, 0]
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"]
        text = "".join(source) if isinstance(source, list) else source
        cell["source"] = _translate_markdown(text, catalog, counts)
    notebook.setdefault("metadata", {})["language"] = "zh_CN"
    return counts[0], counts[1]
