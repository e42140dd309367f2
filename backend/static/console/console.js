// The console works without this file; it only adds conveniences (the pages' CSP allows no inline script).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Small screens: the menu folds behind a button.
  var toggle = document.querySelector(".nav-toggle");
  var nav = document.getElementById("nav");
  if (toggle && nav) {
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }
  // The side-by-side diff: show only the rows that changed.
  document.querySelectorAll("input.changed-only").forEach(function (box) {
    var table = document.getElementById(box.dataset.target);
    if (!table) { return; }
    box.addEventListener("change", function () {
      table.classList.toggle("only-changed", box.checked);
    });
  });
});
