// Reads what the server handed over: the visitor id cookie (not HttpOnly, so a browser SDK can
// use the same profile) and the experience data rendered by {% experience_json %}.
(function () {
  "use strict";
  var match = document.cookie.match(/(?:^|;\s*)ntaid=([^;]+)/);
  var target = document.getElementById("visitor-id");
  if (target) {
    target.textContent = match ? decodeURIComponent(match[1]) : "no cookie yet";
  }
})();
