(() => {
  const form = document.getElementById("filters");
  const rows = [...document.querySelectorAll("#device-index tbody tr")];
  const shown = document.getElementById("shown");
  const field = (name) => form.elements.namedItem(name);
  const has = (list, value) => list.split(" ").includes(value);
  function apply() {
    const query = field("q").value.trim().toLowerCase();
    const verdict = field("verdict").value, cls = field("cls").value, site = field("site").value;
    const check = field("check").value, severity = field("severity").value;
    let count = 0;
    for (const row of rows) {
      const d = row.dataset;
      const keep = (!verdict || d.verdict === verdict) && (!cls || d.cls === cls)
        && (!site || d.site === site) && (!check || has(d.checks, check))
        && (!severity || has(d.severities, severity))
        && (!query || row.textContent.toLowerCase().includes(query));
      row.hidden = !keep;
      count += keep ? 1 : 0;
    }
    shown.textContent = String(count);
  }
  form.hidden = false;
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("clear").addEventListener("click", () => {
    form.reset();
    apply();
  });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      event.preventDefault();
      field("q").focus();
    }
  });
  for (const link of document.querySelectorAll("a[data-filter]")) {
    link.addEventListener("click", () => {
      form.reset();
      field(link.dataset.filter).value = link.dataset.value;
      apply();
    });
  }
  apply();
})();
