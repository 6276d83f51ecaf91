"""The docs' code runs: every code cell of every notebook page, and every block of the legacy pages.

The site build (``nox -s docs``) executes the notebooks too, in a Jupyter
kernel; this test runs the same cells in-process, under the suite's strict
warning filters, so a broken cell fails ``pytest`` without Sphinx installed.

* Notebook pages (``docs/*.md`` with a ``kernelspec``): each ``{code-cell}``, in
  order, in one namespace per page. A cell tagged ``raises-exception`` must
  raise (the page shows that error on purpose).
* Legacy pages (``docs/_legacy/*.md``, plain Markdown not yet in the site): each
  ``python`` block, in order, in one namespace per page.
"""

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"

# The site's pages that are not notebooks (no executed cells; their ```python
# blocks are illustrations, such as the cheat sheet's imports).
PLAIN_PAGES = {"index", "api", "pytorch_cheatsheet"}
NOTEBOOK_PAGES = {"01_tensors", "02_autograd", "gotchas"}
LEGACY_PAGES = {"02_models", "03_losses_and_optimizers", "04_data", "05_training_loop",
                "06_saving_and_loading", "07_mnist", "08_devices"}

NOTEBOOKS = sorted(p for p in DOCS_DIR.glob("*.md") if p.stem not in PLAIN_PAGES)
LEGACY = sorted((DOCS_DIR / "_legacy").glob("[0-9]*.md"))

_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", flags=re.S | re.M)


def code_cells(page: Path) -> list[tuple[str, set[str]]]:
    """The page's ``{code-cell}`` sources, each with its tags."""
    cells = []
    for body in _CELL.findall(page.read_text()):
        lines = body.splitlines()
        tags: set[str] = set()
        # Options come first: ":key: value" lines, or a "---" YAML block.
        if lines and lines[0].strip() == "---":
            end = lines.index("---", 1)
            options, lines = lines[1:end], lines[end + 1:]
        else:
            n = 0
            while n < len(lines) and lines[n].startswith(":"):
                n += 1
            options, lines = lines[:n], lines[n:]
        for option in options:
            m = re.match(r"\s*:?tags:?\s*\[(.*)\]", option)
            if m:
                tags |= {t.strip().strip("'\"") for t in m.group(1).split(",") if t.strip()}
        cells.append(("\n".join(lines), tags))
    return cells


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def is_notebook(page: Path) -> bool:
    return page.read_text().startswith("---\n") and "kernelspec:" in page.read_text()


def test_the_pages_are_the_ones_listed():
    """A page added, renamed or removed shows up here, so the lists above stay honest."""
    assert {p.stem for p in NOTEBOOKS} == NOTEBOOK_PAGES
    assert {p.stem for p in LEGACY} == LEGACY_PAGES
    assert {p.stem for p in DOCS_DIR.glob("*.md")} == NOTEBOOK_PAGES | PLAIN_PAGES
    for page in NOTEBOOKS:
        assert is_notebook(page), f"{page.name}: no jupytext/kernelspec front matter"
        assert code_cells(page), f"{page.name}: no code cells"
    for page in LEGACY:
        assert python_blocks(page), f"{page.name}: no python blocks"


def test_cell_parser_reads_options(tmp_path):
    page_text = ("```{code-cell} ipython3\n:tags: [raises-exception]\n\n1 / 0\n```\n\n"
                 "```{code-cell} ipython3\n---\ntags: [hide-input]\n---\nx = 1\n```\n"
                 "```{code-cell} ipython3\nprint(2)\n```\n")
    page = tmp_path / "p.md"
    page.write_text(page_text)
    cells = code_cells(page)
    assert [tags for _, tags in cells] == [{"raises-exception"}, {"hide-input"}, set()]
    assert [src.strip() for src, _ in cells] == ["1 / 0", "x = 1", "print(2)"]


@pytest.mark.parametrize("page", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(page, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, (source, tags) in enumerate(code_cells(page)):
        code = compile(source, f"{page.name}[cell {i}]", "exec")
        if "raises-exception" in tags:
            with pytest.raises(Exception):  # noqa: B017 - any error: the page shows it
                exec(code, namespace)
            continue
        try:
            exec(code, namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} cell {i} failed: {e!r}\n{source}") from e
    assert capsys.readouterr().out  # every page shows its results


@pytest.mark.parametrize("page", LEGACY, ids=[p.stem for p in LEGACY])
def test_legacy_page_runs(page, mnist_path, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JAXNET_DATA_DIR", str(mnist_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} block {i} failed: {e!r}\n{block}") from e
    assert capsys.readouterr().out  # every page shows its results
