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
