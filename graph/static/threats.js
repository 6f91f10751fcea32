// The latest threats: the table, its pager and a threat's detail.
import { el, formatNumber, formatTime, safeUrl, text } from "./dom.js";

export function renderTable(page, onOpen) {
  const rows = page.items.map((threat) => {
    const title = el("button", { type: "button", class: "link" }, threat.title);
    title.addEventListener("click", () => onOpen(threat));
    return el(
      "tr",
      { "data-id": threat.id },
      el("td", { class: "title" }, title),
      el("td", {}, el("span", { class: `sev sev-${threat.severity.toLowerCase()}` }, threat.severity)),
      el("td", { class: "source" }, threat.source),
      el("td", { class: "category" }, threat.category),
      el("td", { class: "nowrap" }, formatTime(threat.publishedAt)),
    );
  });
  if (rows.length === 0) {
    rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No threats match.")));
  }
  document.querySelector("#threats tbody").replaceChildren(...rows);
  const pages = Math.max(1, Math.ceil(page.total / page.limit));
  text("page-info", `Page ${formatNumber(page.page)} of ${formatNumber(pages)}`);
  text("threats-total", `${formatNumber(page.total)} matching`);
  document.getElementById("prev").disabled = page.page <= 1;
  document.getElementById("next").disabled = !page.hasNextPage;
}

export function openDetail(threat) {
  text("detail-title", threat.title);
  const severity = document.getElementById("detail-severity");
  severity.textContent = threat.severity;
  severity.setAttribute("class", `sev sev-${threat.severity.toLowerCase()}`);
  text(
    "detail-meta",
    `${threat.source} · ${threat.externalId} · ${threat.category} · ${formatTime(threat.publishedAt)}`,
  );
  text("detail-description", threat.description || "");
  document
    .getElementById("detail-indicators")
    .replaceChildren(
      ...(threat.indicators.length
        ? threat.indicators.map((i) => el("li", {}, el("code", {}, i.kind), " ", i.value))
        : [el("li", { class: "muted" }, "none")]),
    );
  document
    .getElementById("detail-tags")
    .replaceChildren(...threat.tags.map((tag) => el("span", { class: "tag" }, tag)));
  const link = document.getElementById("detail-link");
  const href = safeUrl(threat.url);
  if (href) {
    link.setAttribute("href", href);
    link.textContent = href;
    link.hidden = false;
  } else {
    link.removeAttribute("href");
    link.textContent = "";
    link.hidden = true;
  }
  const dialog = document.getElementById("detail");
  if (!dialog.open) dialog.showModal();
}
