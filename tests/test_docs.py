"""Every Python block of every tutorial in docs/ runs, in order, in one namespace per page."""

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS = sorted((Path(__file__).resolve().parents[1] / "docs").glob("[0-9]*.md"))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_every_chapter_has_code():
    assert len(DOCS) == 8
    assert all(python_blocks(page) for page in DOCS)


@pytest.mark.parametrize("page", DOCS, ids=[p.stem for p in DOCS])
def test_tutorial_runs(page, mnist_path, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("JAXNET_DATA_DIR", str(mnist_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name} block {i} failed: {e!r}\n{block}") from e
    assert capsys.readouterr().out  # every page shows its results
