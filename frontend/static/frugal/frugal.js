// Progressive enhancement only: every action works as a plain link or form without this file.
document.addEventListener("htmx:responseError", function (event) {
  var box = document.getElementById("htmx-error");
  if (!box) {
    box = document.createElement("div");
    box.id = "htmx-error";
    box.className = "flash-error";
    document.body.appendChild(box);
  }
  var notice = event.detail.xhr.getResponseHeader("X-Frugal-Notice");
  box.textContent = notice || ("The server could not complete that (" + event.detail.xhr.status + "). Reload and try again.");
  setTimeout(function () { box.remove(); }, 6000);
});

// Forms that ask before they do something irreversible: <form data-confirm="Delete this?">.
// (An onsubmit attribute would be inline script, which the Content-Security-Policy refuses.)
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
    // Captured at the document, before htmx's listener on the form: an hx-post form stays put too.
    event.stopPropagation();
  }
}, true);

// Keyboard-first cards (<div data-key-scope>): a key presses the card's button with that
// data-key ("s" for space). Without JavaScript the buttons do the same.
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
  var card = document.querySelector("[data-key-scope]");
  if (!card || card.querySelector("form.htmx-request")) return;
  var key = event.key === " " ? "s" : event.key.toLowerCase();
  var button = card.querySelector('button[data-key="' + key + '"]');
  if (button && !button.disabled) {
    event.preventDefault();
    button.click();
  }
});

// Copy buttons: <button data-copy-target="element-id">Copy</button> copies that element's text.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-copy-target]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy-target"));
  if (!source) return;
  var text = (source.value !== undefined && source.tagName !== "BUTTON" && source.value) || source.textContent.trim();
  function done(ok) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(function () { button.textContent = label; }, 1800);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
  } else {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    done(ok);
  }
});

// Collapsible panels that remember being open: <details data-remember="key">.
(function () {
  function restore(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("details[data-remember]").forEach(function (details) {
      try {
        if (localStorage.getItem("frugal:open:" + details.getAttribute("data-remember")) === "1") details.open = true;
      } catch (e) { /* storage may be off */ }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { restore(document); });
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.matches || !details.matches("details[data-remember]")) return;
    try {
      localStorage.setItem("frugal:open:" + details.getAttribute("data-remember"), details.open ? "1" : "0");
    } catch (e) { /* storage may be off */ }
  }, true);
})();
