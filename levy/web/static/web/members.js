/* The members list's hover card: hovering a member's row or moving to it with the
   keyboard shows the card (its figures come from the server with htmx, once per row);
   leaving the row, moving focus elsewhere or pressing Escape hides it. */
(function () {
  "use strict";
  var open = null;
  var hideTimer = null;
  // Where the pointer was when Escape closed a card: the browser re-sends "mouseenter"
  // when the page changes under a still pointer, which must not reopen a card.
  var pointer = { x: -1, y: -1 };
  var dismissedAt = null;

  function cardOf(row) { return document.getElementById(row.getAttribute("data-card")); }

  function hide(card) {
    if (!card) { return; }
    card.hidden = true;
    if (open === card) { open = null; }
  }

  function show(row) {
    var card = cardOf(row);
    if (!card) { return; }
    window.clearTimeout(hideTimer);
    if (open && open !== card) { hide(open); }
    card.hidden = false;
    open = card;
    place(card);
  }

  // Below the row when it fits in the window, else above it when that fits better.
  function place(card) {
    card.classList.remove("above");
    var box = card.getBoundingClientRect();
    var cell = card.parentNode.getBoundingClientRect();
    if (box.bottom > window.innerHeight && cell.top - box.height > 0) {
      card.classList.add("above");
    }
  }

  function init() {
    var rows = document.querySelectorAll("tr.member-row[data-card]");
    Array.prototype.forEach.call(rows, function (row) {
      row.addEventListener("mouseenter", function (event) {
        if (dismissedAt && event.clientX === dismissedAt.x && event.clientY === dismissedAt.y) { return; }
        dismissedAt = null;
        show(row);
      });
      row.addEventListener("mouseleave", function () {
        var card = cardOf(row);
        hideTimer = window.setTimeout(function () { hide(card); }, 200);
      });
      row.addEventListener("focusin", function () { show(row); });
      row.addEventListener("focusout", function (event) {
        if (!row.contains(event.relatedTarget)) { hide(cardOf(row)); }
      });
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      if (open && event.target === open) { place(open); }
    });
    document.addEventListener("mousemove", function (event) {
      pointer = { x: event.clientX, y: event.clientY };
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && open) {
        dismissedAt = { x: pointer.x, y: pointer.y };
        hide(open);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
