// Behaviour shared by console pages. It lives here rather than in inline scripts or on* attributes because the
// Content-Security-Policy allows scripts from /static only (and htmx may not eval trigger filters).
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form.
  document.addEventListener("change", function (evt) {
    var el = evt.target;
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) { el.form.submit(); }
  });

  // <input type="checkbox" data-tick-all>: ticks or clears every customer_id box of its table.
  document.addEventListener("click", function (evt) {
    var el = evt.target;
    if (el instanceof HTMLInputElement && el.hasAttribute("data-tick-all")) {
      el.closest("table").querySelectorAll("input[name=customer_id]").forEach(function (b) { b.checked = el.checked; });
    }
    if (el instanceof HTMLElement && el.hasAttribute("data-print")) { window.print(); }
  });

  // <form data-confirm="question">: submitted only when the user confirms.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm") && !window.confirm(form.dataset.confirm)) {
      evt.preventDefault();
    }
  }, true);

  // An element with data-pause-while-editing keeps its htmx polling from firing while a form inside it has
  // focus, so a reply being typed is not wiped by the next refresh.
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var el = evt.detail && evt.detail.elt;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-pause-while-editing")) { return; }
    var active = document.activeElement;
    var form = active && active.closest ? active.closest("form") : null;
    if (form && el.contains(form)) { evt.preventDefault(); }
  });

  // [data-seconds-left] counts down once a second between polls (the lead inbox's reply deadlines).
  setInterval(function () {
    document.querySelectorAll("[data-seconds-left]").forEach(function (el) {
      var s = parseInt(el.getAttribute("data-seconds-left"), 10) - 1;
      el.setAttribute("data-seconds-left", s);
      var a = Math.abs(s), text = Math.floor(a / 60) + ":" + String(a % 60).padStart(2, "0");
      el.textContent = (s < 0 ? "-" : "") + text;
      el.classList.toggle("danger-text", s < 0);
    });
  }, 1000);
})();
