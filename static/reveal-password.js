// A "Show password" button under every password field, so people can check what they typed.
//
// Progressive enhancement: without this script the fields work as plain password fields and
// nothing of the toggle is on the page. The words come from the <script> tag's data-
// attributes, written by the page in its own language; the page's Content-Security-Policy
// allows script files from this site only, never inline code.
//
// The button's words change with what it will do ("Show password" / "Hide password") and it
// points at its field with aria-controls. It carries no aria-pressed: a toggle whose name
// changes with its state would be read out as "Hide password, pressed", saying it twice.
// A polite status line says what changed for people who cannot see the field.
(function () {
  "use strict";

  var words = document.currentScript ? document.currentScript.dataset : null;

  function start() {
    if (!words || !words.show || !words.hide) {
      return;
    }
    var fields = document.querySelectorAll("input[type=password][id]");
    if (!fields.length) {
      return;
    }
    var status = document.createElement("p");
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    document.body.appendChild(status);

    var toggles = [];
    fields.forEach(function (field) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "reveal";
      button.setAttribute("aria-controls", field.id);
      button.textContent = words.show;

      function set(shown) {
        field.type = shown ? "text" : "password";
        button.textContent = shown ? words.hide : words.show;
      }

      button.addEventListener("click", function () {
        var shown = field.type === "password";
        set(shown);
        status.textContent = shown ? words.shown : words.hidden;
      });
      field.insertAdjacentElement("afterend", button);
      toggles.push({ field: field, set: set });
    });

    // A form sent while a password shows as text could leave it in the browser's history of
    // typed text: every field goes back to a password field first.
    document.querySelectorAll("form").forEach(function (form) {
      form.addEventListener("submit", function () {
        toggles.forEach(function (toggle) {
          if (form.contains(toggle.field)) {
            toggle.set(false);
          }
        });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
