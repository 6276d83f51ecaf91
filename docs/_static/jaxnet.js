/* Tables on a phone (custom.css, below 576 px): each row becomes a block and each
   cell says which column it is in (its header's text, copied here into data-label),
   so the cheat sheet reads "PyTorch: torch.zeros(2, 3)", "JAX / jaxnet: jnp.zeros((2, 3))"
   row by row instead of scrolling sideways through three columns. */
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll(".bd-article table")) {
    const headers = table.querySelectorAll("thead tr:first-child th");
    if (headers.length < 2) continue;
    const labels = Array.from(headers, (th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      Array.from(row.children).forEach((cell, i) => {
        if (labels[i]) cell.setAttribute("data-label", labels[i]);
      });
    }
    table.classList.add("jaxnet-stack");
  }
});

/* A long call in a table cell (`model.load_state_dict(torch.load("model.pth"))`) may
   break after an opening parenthesis, between two names, never inside one: a <wbr>
   there (it is not copied with the text). Without it such a cell pushed the table's
   last column out of the page at 1280 px. */
document.addEventListener("DOMContentLoaded", () => {
  for (const span of document.querySelectorAll(".bd-article table code span.pre")) {
    const text = span.textContent;
    if (text.length <= 20 || !text.slice(0, -1).includes("(")) continue;
    span.textContent = "";
    text.split(/(?<=\()/).forEach((part, i) => {
      if (i) span.appendChild(document.createElement("wbr"));
      span.appendChild(document.createTextNode(part));
    });
  }
});

/* Sphinx 9.0's Chinese search data (language_data.js, loaded after this file on the
   search page) ends with `window.Stemmer = ChineseStemmer;` but never defines
   ChineseStemmer, so on the Chinese site every search stopped at a ReferenceError and
   found nothing. Its index stems Latin words with the English Snowball stemmer (and
   leaves Chinese words as jieba cut them), so the stemmer it means is the English one,
   which language_data.js defines before any search runs. */
if (document.documentElement.lang.startsWith("zh") && typeof window.ChineseStemmer === "undefined") {
  window.ChineseStemmer = function ChineseStemmer() {
    return new EnglishStemmer();
  };
}

/* Opened from disk (file://, as the README suggests), the search page cannot fetch the
   pages it would quote under each result (the browser refuses), so it lists the
   results without trying; served over http the quotes come back. */
if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
  DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;  // a const global, not on window
}
