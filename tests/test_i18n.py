"""The Chinese edition (docs/locale/zh_CN): catalogs current and complete, outputs identical.

* ``test_catalogs_are_current``: the pages' translatable strings (a gettext build
  into a temporary folder, without executing the notebooks) are exactly the
  msgids of the committed catalogs, page by page, headers aside. A page whose
  prose changed without ``sphinx-intl update`` fails here, naming the strings.
* ``test_catalogs_are_translated``: every string of every catalog has a
  translation and none is fuzzy (what ``sphinx-intl stat`` counts); the failure
  lists each incomplete catalog with its counts and first strings.
* With both sites built (``docs/_build/html`` and ``docs/_build/html/zh_CN``,
  see docs/conf.py): each page's code cells and their outputs are the same in
  both languages, each page links to itself in the other language by a relative
  href, numbered titles keep their number, and the Chinese search index holds
  Chinese words (jieba).

The main test venv has no Sphinx (README's test command installs no docs extra):
there the module skips. ``.ci/run`` installs the docs extra, builds both sites
and runs this file with ``JAXNET_I18N_REQUIRE_BUILD=1``, so nothing skips in CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

_NO_DOCS = "the docs extra is not installed (pip install -e '.[docs]')"
pytest.importorskip("sphinx", reason=_NO_DOCS)
pytest.importorskip("myst_nb", reason=_NO_DOCS)
pofile = pytest.importorskip("babel.messages.pofile", reason=_NO_DOCS)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LANGUAGE = "zh_CN"
CATALOGS = DOCS / "locale" / LANGUAGE / "LC_MESSAGES"
HTML = Path(os.environ.get("JAXNET_DOCS_HTML", DOCS / "_build" / "html"))
HTML_ZH = HTML / LANGUAGE
REQUIRE_BUILD = os.environ.get("JAXNET_I18N_REQUIRE_BUILD") == "1"
# Pages with no catalog: the API reference stays English (docs/api/*), and
# Sphinx's own template strings (sphinx.pot) are translated by Sphinx.
UNTRANSLATED = re.compile(r"^(api/|sphinx$)")


def _msgids(path: Path) -> set[tuple[str, str | None]]:
    with path.open("rb") as f:
        catalog = pofile.read_po(f)
    return {(m.id if isinstance(m.id, str) else "\x00".join(m.id), m.context)
            for m in catalog if m.id}


@pytest.fixture(scope="module")
def pot_dir(tmp_path_factory) -> Path:
    """The pages' message templates, as the committed catalogs were made (no locations)."""
    out = tmp_path_factory.mktemp("gettext")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "gettext", "-j", "auto",
         "-D", "gettext_compact=0", "-D", "gettext_location=0", "-D", "gettext_uuid=0",
         "-D", "nb_execution_mode=off",   # prose only: no notebook needs to run
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, f"sphinx-build -b gettext failed:\n{result.stderr[-4000:]}"
    return out


def _templates(pot_dir: Path) -> dict[str, Path]:
    pages = {}
    for pot in pot_dir.rglob("*.pot"):
        page = pot.relative_to(pot_dir).with_suffix("").as_posix()
        if not UNTRANSLATED.match(page):
            pages[page] = pot
    return pages


def _catalogs() -> dict[str, Path]:
    return {po.relative_to(CATALOGS).with_suffix("").as_posix(): po
            for po in CATALOGS.rglob("*.po")}


def test_catalogs_are_current(pot_dir):
    """gettext + ``sphinx-intl update`` would change no msgid of any catalog."""
    templates, catalogs = _templates(pot_dir), _catalogs()
    problems = []
    for page in sorted(set(templates) - set(catalogs)):
        problems.append(f"{page}: a page without a catalog (docs/locale/{LANGUAGE}/LC_MESSAGES/"
                        f"{page}.po is missing)")
    for page in sorted(set(catalogs) - set(templates)):
        problems.append(f"{page}.po: a catalog for no page (remove it)")
    for page in sorted(set(templates) & set(catalogs)):
        want, have = _msgids(templates[page]), _msgids(catalogs[page])
        new, gone = sorted(want - have), sorted(have - want)
        if new or gone:
            lines = [f"{page}.po: {len(new)} new string(s) not in the catalog, "
                     f"{len(gone)} string(s) no longer on the page"]
            lines += [f"    + {msgid[:200]!r}" for msgid, _ in new[:5]]
            lines += [f"    - {msgid[:200]!r}" for msgid, _ in gone[:5]]
            problems.append("\n".join(lines))
    assert not problems, (
        "stale catalogs: run\n"
        "  sphinx-build -b gettext -D gettext_compact=0 -D gettext_location=0 docs "
        "docs/_build/gettext\n"
        f"  sphinx-intl update -p docs/_build/gettext -l {LANGUAGE} -d docs/locale\n"
        "and translate what it adds (it marks changed strings fuzzy):\n" + "\n".join(problems))


def _incomplete(path: Path) -> tuple[list[str], list[str], int]:
    with path.open("rb") as f:
        catalog = pofile.read_po(f)
    untranslated, fuzzy, total = [], [], 0
    for m in catalog:
        if not m.id:
            continue
        total += 1
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        msgid = m.id if isinstance(m.id, str) else m.id[0]
        if m.fuzzy:
            fuzzy.append(msgid)
        elif not all(strings):
            untranslated.append(msgid)
    return untranslated, fuzzy, total


def test_catalogs_are_translated():
    """Every string of every catalog is translated and none is fuzzy (``sphinx-intl stat``)."""
    catalogs = _catalogs()
    assert catalogs, f"no catalogs under {CATALOGS}"
    problems = []
    for page, path in sorted(catalogs.items()):
        untranslated, fuzzy, total = _incomplete(path)
        if untranslated or fuzzy:
            first = (fuzzy + untranslated)[0].replace("\n", " ")
            problems.append(f"{page}.po: {total - len(untranslated) - len(fuzzy)}/{total} "
                            f"translated, {len(untranslated)} untranslated, {len(fuzzy)} fuzzy "
                            f"(first: {first[:80]!r})")
    assert not problems, "incomplete Chinese catalogs:\n" + "\n".join(problems)


# --- the two built sites ---------------------------------------------------------------
def _built() -> None:
    missing = [p for p in (HTML / "index.html", HTML_ZH / "index.html") if not p.is_file()]
    if missing:
        message = (f"the sites are not built ({', '.join(map(str, missing))} missing): "
                   f"sphinx-build -b html docs {HTML} and "
                   f"sphinx-build -b html -D language={LANGUAGE} docs {HTML_ZH}")
        if REQUIRE_BUILD:
            pytest.fail(message)
        pytest.skip(message)


def _pages() -> list[str]:
    """The translated pages, as built HTML paths relative to the site (05_training.html)."""
    return sorted(f"{page}.html" for page in _catalogs())


class _Blocks(HTMLParser):
    """Collects, in order, the serialised contents of the divs whose class is in ``kinds``,
    plus the language switcher's href and each h1's text."""

    def __init__(self, kinds: set[str]):
        super().__init__(convert_charrefs=True)
        self.kinds, self.blocks, self.switch, self.h1 = kinds, [], [], []
        self._depth, self._parts, self._in_h1 = 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs_d = dict(attrs)
        classes = set((attrs_d.get("class") or "").split())
        if self._depth:
            if tag == "div":
                self._depth += 1
            self._parts.append(f"<{tag} {sorted((k, v) for k, v in attrs if k != 'id')}>")
        elif tag == "div" and classes & self.kinds:
            self._depth, self._parts = 1, [f"[{' '.join(sorted(classes & self.kinds))}]"]
        if tag == "a" and "jaxnet-lang-switch" in classes:
            self.switch.append(attrs_d.get("href"))
        if tag == "h1":
            self._in_h1 = []

    def handle_endtag(self, tag):
        if self._depth:
            if tag == "div":
                self._depth -= 1
                if not self._depth:
                    self.blocks.append("".join(self._parts))
                    return
            self._parts.append(f"</{tag}>")
        if tag == "h1" and self._in_h1 is not None:
            self.h1.append("".join(self._in_h1).strip())
            self._in_h1 = None

    def handle_data(self, data):
        if self._depth:
            self._parts.append(data)
        if self._in_h1 is not None:
            self._in_h1.append(data)


def _parse(path: Path, kinds=frozenset({"cell_input", "cell_output"})) -> _Blocks:
    parser = _Blocks(set(kinds))
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_code_and_outputs_are_the_same_in_both_languages():
    """One copy of every code cell, one execution: the Chinese pages show the English pages'
    code and outputs exactly (the shared jupyter-cache), in the same order."""
    _built()
    differ = []
    for page in _pages():
        en, zh = HTML / page, HTML_ZH / page
        assert en.is_file() and zh.is_file(), f"{page}: built in one language only"
        en_blocks, zh_blocks = _parse(en).blocks, _parse(zh).blocks
        if en_blocks != zh_blocks:
            n = next((i for i, (a, b) in enumerate(zip(en_blocks, zh_blocks, strict=False))
                      if a != b), min(len(en_blocks), len(zh_blocks)))
            en_n = en_blocks[n][:300] if n < len(en_blocks) else None
            zh_n = zh_blocks[n][:300] if n < len(zh_blocks) else None
            differ.append(f"{page}: {len(en_blocks)} vs {len(zh_blocks)} cell blocks; "
                          f"block {n} differs:\n  en: {en_n!r}\n  zh: {zh_n!r}")
    assert not differ, "the languages' code cells or outputs differ:\n" + "\n".join(differ)
    assert any(_parse(HTML / page).blocks for page in _pages()), "no executed cells found"


def test_every_page_links_to_itself_in_the_other_language():
    """The switcher is a relative link (the site works opened from disk), both ways."""
    _built()
    checked = 0
    for en in sorted(HTML.rglob("*.html")):
        page = en.relative_to(HTML).as_posix()
        if page.startswith((f"{LANGUAGE}/", "_", "jupyter_execute")):
            continue
        up = "../" * page.count("/")
        zh = HTML_ZH / page
        assert _parse(en).switch == [f"{up}{LANGUAGE}/{page}"], page
        assert zh.is_file(), f"{page}: the English page's switcher points at a missing page"
        assert _parse(zh).switch == [f"{up}../{page}"], f"{LANGUAGE}/{page}"
        checked += 1
    assert checked >= len(_pages())


def test_numbered_titles_keep_their_number():
    """A translated '2. 自动微分' in Markdown is a list, not a title: each page keeps its h1s,
    and a chapter's number survives."""
    _built()
    for page in _pages():
        en, zh = _parse(HTML / page, kinds=set()).h1, _parse(HTML_ZH / page, kinds=set()).h1
        assert en and len(zh) == len(en), f"{page}: h1 {en!r} (English) vs {zh!r} (Chinese)"
        for en_title, zh_title in zip(en, zh, strict=True):
            number = re.match(r"\d+\.", en_title)
            if number:
                assert zh_title.startswith(number.group()), \
                    f"{page}: {en_title!r} became {zh_title!r}"


def test_the_chinese_search_index_holds_chinese_words():
    """Sphinx's zh search with jieba: words, not whole runs of Chinese text."""
    _built()
    text = (HTML_ZH / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    terms = set(index["terms"]) | set(index.get("titleterms", {}))
    chinese = {t for t in terms if re.search(r"[\u4e00-\u9fff]", t)}
    # 张量 and 梯度 as jieba cuts them; 自动微分 and 数据加载器 whole, as the search box
    # sends them (conf.py adds the glossary's terms to jieba's dictionary).
    want = {"张量", "梯度", "自动微分", "数据加载器", "模型的保存与加载"}
    assert want <= chinese, f"{len(chinese)} Chinese terms, e.g. {sorted(chinese)[:20]}"
    assert max(map(len, chinese)) <= 12, "runs of Chinese text indexed whole (no jieba?)"


class _Links(HTMLParser):
    """Every local href/src of a page, and the ids (anchors) it defines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs_d = dict(attrs)
        self.ids.update(attrs_d[k] for k in ("id", "name") if attrs_d.get(k))
        for key in ("href", "src"):
            value = attrs_d.get(key)
            if value is not None and tag in ("a", "link", "script", "img", "source"):
                self.links.append(value)


def test_every_local_link_lands_on_a_file_and_an_anchor():
    """What ``sphinx-build -b linkcheck`` leaves unchecked (it ignores local anchors and the
    generated source pages): every href and src without a scheme, in both sites, names a
    file that exists and, with a #fragment into a page, an id on that page. The viewcode
    source pages' "[docs]" links included (docs/conf.py's _viewcode_backlinks)."""
    from urllib.parse import unquote, urlsplit

    _built()
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _Links()
            parsed[path].feed(path.read_text(encoding="utf-8", errors="replace"))
        return parsed[path]

    broken, checked = [], 0
    for page in sorted(HTML.rglob("*.html")):
        if "_static" in page.relative_to(HTML).parts:
            continue  # the theme's template sources, not pages
        for href in parse(page).links:
            url = urlsplit(href)
            if url.scheme or href.startswith(("//", "javascript:")):
                continue
            checked += 1
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(HTML)}: {href} (no such file)")
            elif (url.fragment and target.suffix == ".html"
                  and unquote(url.fragment) not in parse(target).ids):
                broken.append(f"{page.relative_to(HTML)}: {href} (no such anchor)")
    assert checked > 1000, f"only {checked} local links found"
    assert not broken, f"{len(broken)} broken local links:\n" + "\n".join(broken[:30])


def test_the_chinese_pages_offer_a_chinese_notebook_with_the_same_code():
    """The download menu's .ipynb on a Chinese page is the executed notebook with the
    page's catalog applied: Chinese prose, the English notebook's code cells and outputs
    (myst-nb wrote the Chinese build's notebooks without outputs: they came from the
    cache), and the menu says 中文; the .md is the English source and says so."""
    _built()
    checked = 0
    for page in _pages():
        zh_nb, en_nb = HTML_ZH / "_sources" / f"{page[:-5]}.ipynb", \
            HTML / "_sources" / f"{page[:-5]}.ipynb"
        if not en_nb.is_file():
            continue  # a page without code cells offers no notebook
        assert zh_nb.is_file(), f"{page}: the English page offers a notebook, the Chinese not"
        en, zh = (json.loads(p.read_text(encoding="utf-8")) for p in (en_nb, zh_nb))
        def code(notebook):  # (source, outputs) of each code cell; ids differ per read
            return [("".join(c["source"]), c.get("outputs")) for c in notebook["cells"]
                    if c["cell_type"] == "code"]

        assert code(zh) == code(en), page
        assert any(outputs for _, outputs in code(en)), f"{page}: a notebook without outputs"
        prose = "".join("".join(c["source"]) for c in zh["cells"] if c["cell_type"] == "markdown")
        assert len(re.findall(r"[\u4e00-\u9fff]", prose)) > 200, f"{page}: notebook not in Chinese"
        html = (HTML_ZH / page).read_text(encoding="utf-8")
        assert ".ipynb（中文）" in html and ".md（英文原稿）" in html, page
        checked += 1
    assert checked >= 9, f"only {checked} Chinese notebooks"


def test_the_chinese_search_page_defines_the_stemmer_its_data_names():
    """Sphinx 9.0's zh language_data.js ends with ``window.Stemmer = ChineseStemmer`` and
    never defines it: the Chinese search page stopped at a ReferenceError and found
    nothing (a headless Chromium search for 张量 now finds 11 pages). A script the page
    loads before language_data.js (docs/_static/jaxnet.js) must define it."""
    _built()
    page = (HTML_ZH / "search.html").read_text(encoding="utf-8")
    scripts = [src.split("?")[0] for src in re.findall(r'<script[^>]* src="([^"]+)"', page)]
    assert "_static/language_data.js" in scripts
    data = (HTML_ZH / "_static" / "language_data.js").read_text(encoding="utf-8")
    for name in set(re.findall(r"window\.Stemmer\s*=\s*(\w+)", data)):
        if re.search(rf"(var|let|const|function)\s+{name}\b|{name}\s*=\s*function", data):
            continue  # language_data.js defines it itself
        earlier = scripts[:scripts.index("_static/language_data.js")]
        assert any(re.search(rf"window\.{name}\s*=", (HTML_ZH / src).read_text(encoding="utf-8"))
                   for src in earlier if not src.startswith(("http", "//"))
                   and (HTML_ZH / src).is_file()), \
            f"the Chinese search page uses {name}, which no script defines"


def test_the_chinese_pages_label_the_collapsed_cells_in_chinese():
    """myst-nb labels a collapsed (hide-cell) cell "Show code cell content" whatever the
    language; every exercise's solution is one, and the Chinese pages showed that English
    label 27 times. docs/conf.py gives the zh_CN build Chinese labels."""
    _built()
    chinese = english = 0
    for page in _pages():
        text = (HTML_ZH / page).read_text(encoding="utf-8")
        assert "Show code cell" not in text and "Hide code cell" not in text, page
        chinese += text.count("显示代码和输出")
        english += (HTML / page).read_text(encoding="utf-8").count("Show code cell content")
    assert chinese == english >= 27
