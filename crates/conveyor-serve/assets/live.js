// conveyor dashboard: keeps the parts of a page marked data-live up to date.
// The server renders each update; this only puts it in place. A browser's
// EventSource reconnects by itself when the connection drops.
"use strict";
for (const element of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(element.dataset.live);
  source.onmessage = (event) => {
    element.innerHTML = event.data;
    element.dataset.updated = String(Date.now());
  };
  source.onerror = () => element.classList.add("stale");
  source.onopen = () => element.classList.remove("stale");
}
// A part that costs more to read than the page (a count with a search)
// comes after it, from the link in its data-fill.
for (const element of document.querySelectorAll("[data-fill]")) {
  fetch(element.dataset.fill, { credentials: "same-origin" })
    .then((answer) => answer.text())
    .then((html) => { element.innerHTML = html; element.dataset.filled = "1"; })
    .catch(() => element.classList.add("stale"));
}
// A destructive action asks first (the form's data-confirm says what).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
