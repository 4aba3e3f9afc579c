// Weir's web UI: refreshes the content of <main> every 2 s without
// reloading the page. It fetches the same URL with ?fragment=1, which
// returns only that content, and swaps it in. It pauses while the tab is
// hidden, while text on the page is selected (so it can be copied) and
// when the "live" button is clicked; it stops when the session ended.
(function () {
  "use strict";

  var PERIOD_MS = 2000;
  var main = document.getElementById("main");
  var button = document.getElementById("live");
  if (!main || !main.hasAttribute("data-live")) {
    return;
  }
  var paused = false;
  var stopped = false;
  var busy = false;

  function show(text, state) {
    if (button) {
      button.textContent = text;
      button.setAttribute("data-state", state);
    }
  }

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.hash = "";
    return url.toString();
  }

  function selecting() {
    var selection = window.getSelection ? window.getSelection() : null;
    return selection !== null && !selection.isCollapsed;
  }

  function refresh() {
    if (busy || paused || stopped || document.hidden || selecting()) {
      return;
    }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // A redirect leads to the sign-in page: the session ended.
        if (response.redirected || response.status === 401 || response.status === 403) {
          stopped = true;
          show("signed out: reload", "stopped");
          return null;
        }
        // 404 and 503 pages explain themselves; show them too.
        if (response.status !== 200 && response.status !== 404 && response.status !== 503) {
          show("refresh failed (" + response.status + ")", "failing");
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null && !paused && !selecting()) {
          main.innerHTML = html;
          show("live", "live");
        }
      })
      .catch(function () {
        show("offline: retrying", "failing");
      })
      .then(function () {
        busy = false;
      });
  }

  if (button) {
    button.addEventListener("click", function () {
      if (stopped) {
        window.location.reload();
        return;
      }
      paused = !paused;
      show(paused ? "paused" : "live", paused ? "paused" : "live");
      if (!paused) {
        refresh();
      }
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
  show("live", "live");
  window.setInterval(refresh, PERIOD_MS);
})();
