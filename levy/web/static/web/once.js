// Forms marked data-submit-once: after the first submit the button is disabled and says
// so. The server moves money once whatever happens (the form's idempotency key); this
// only spares a second tap.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.hasAttribute("data-submit-once")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
  var button = form.querySelector("button[type=submit]");
  if (button) {
    setTimeout(function () { button.disabled = true; button.textContent = "Working…"; }, 0);
  }
});
// Back to a page from the browser's cache: the form may be used again (the key replays).
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form[data-submit-once]").forEach(function (form) { delete form.dataset.sent; });
});
