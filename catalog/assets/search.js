// Client-side search over search-index.json, and the copy buttons. Everything else works
// without JavaScript: the list is complete in the HTML and the commands are selectable text.
(function () {
  "use strict";
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var input = document.getElementById(button.dataset.copy);
      if (!input || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(input.value).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
  var form = document.getElementById("search");
  var list = document.getElementById("repos");
  if (!form || !list) { return; }
  var root = document.querySelector('link[rel="stylesheet"]').getAttribute("href").replace("style.css", "");
  fetch(root + "search-index.json").then(function (r) { return r.json(); }).then(function (index) {
    var input = document.getElementById("q");
    var count = document.getElementById("count");
    var items = Array.prototype.slice.call(list.querySelectorAll("li[data-name]"));
    form.hidden = false;
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var match = {};
      index.forEach(function (entry) {
        var text = (entry.name + " " + (entry.description || "") + " " + entry.platforms.join(" ")).toLowerCase();
        if (words.every(function (w) { return text.indexOf(w) >= 0; })) { match[entry.name] = true; }
      });
      var shown = 0;
      items.forEach(function (li) {
        var on = !!match[li.dataset.name];
        li.hidden = !on;
        if (on) { shown += 1; }
      });
      count.textContent = words.length ? shown + " of " + items.length + " repositories" : "";
    });
  });
})();
