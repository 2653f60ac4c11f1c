// Reads what the server handed over: the visitor id cookie (not HttpOnly, so a browser SDK can
// keep using the same profile) and the data rendered by {% experience_json %}, which a browser
// SDK or the site's own scripts can use without asking the API a second time.
(function () {
  "use strict";
  var match = document.cookie.match(/(?:^|;\s*)ntaid=([^;]+)/);
  var visitor = document.getElementById("visitor-id");
  if (visitor) {
    visitor.textContent = match ? decodeURIComponent(match[1]) : "no cookie yet";
  }
  var script = document.getElementById("experience-data");
  var target = document.getElementById("browser-data");
  if (script && target) {
    try {
      var data = JSON.parse(script.textContent);
      target.textContent = (data.experiences || []).length + " experiences, " +
        (data.changes || []).length + " inline variables, " +
        (data.profile ? "profile " + data.profile.id : "no profile");
    } catch (error) {
      target.textContent = "unreadable";
    }
  }
})();
