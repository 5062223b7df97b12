// crm-postback admin: small progressive enhancements; every form also works without JS.
(function () {
  "use strict";

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function customEvent() {
    var choice = document.getElementById("event-choice");
    var box = document.getElementById("custom-event");
    if (!choice || !box) return;
    var sync = function () { box.classList.toggle("hidden", choice.value !== "__custom__"); };
    choice.addEventListener("change", sync);
    sync();
  }

  function conditionRow(row) {
    var op = row.querySelector("select[name=cond_op]");
    var sync = function () { row.classList.toggle("no-value", op.value === "exists"); };
    op.addEventListener("change", sync);
    sync();
    var remove = row.querySelector(".remove-cond");
    if (remove) {
      remove.addEventListener("click", function () {
        var all = document.querySelectorAll("#conditions .cond-row");
        if (all.length > 1) { row.remove(); } else { row.querySelectorAll("input").forEach(function (i) { i.value = ""; }); }
      });
    }
  }

  function conditions() {
    var box = document.getElementById("conditions");
    var add = document.getElementById("add-cond");
    var template = document.getElementById("cond-template");
    if (!box) return;
    box.querySelectorAll(".cond-row").forEach(conditionRow);
    if (add && template) {
      add.addEventListener("click", function () {
        var row = template.content.firstElementChild.cloneNode(true);
        row.removeAttribute("data-template");
        box.appendChild(row);
        conditionRow(row);
        row.querySelector("input").focus();
      });
    }
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function copyButtons() {
    document.querySelectorAll(".copy-json").forEach(function (button) {
      button.addEventListener("click", function () {
        var pre = document.getElementById("preview-json");
        if (pre && navigator.clipboard) {
          navigator.clipboard.writeText(pre.textContent).then(function () { button.textContent = "Copied"; });
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    autosubmit();
    customEvent();
    conditions();
    confirmations();
    copyButtons();
    var result = document.getElementById("preview-result");
    if (result) result.scrollIntoView({ block: "nearest" });
  });
})();
