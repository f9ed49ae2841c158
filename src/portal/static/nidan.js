// nidan portal: the app-approval waiting page polls the flow's status and reloads
// when it changes. The page works without this file (meta refresh); CSP allows
// only 'self' scripts, so nothing here is inline.
(function () {
  "use strict";
  var box = document.getElementById("nidan-wait");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-poll");
  if (!url) { return; }
  var shown = box.getAttribute("data-approval") || "pending";
  var step = null;
  var failures = 0;
  var started = Date.now();
  var INTERVAL = 2000;
  var GIVE_UP = 10 * 60 * 1000; // the meta refresh keeps going after this

  function reload() { window.location.reload(); }

  function schedule() {
    if (Date.now() - started < GIVE_UP) { window.setTimeout(poll, INTERVAL); }
  }

  function poll() {
    fetch(url, {
      method: "GET",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Accept": "application/json" }
    }).then(function (res) {
      // The flow is gone or no longer ours: let the server's page explain.
      if (res.status === 404 || res.status === 410 || res.status === 401 || res.status === 403) {
        reload();
        return null;
      }
      if (!res.ok) { throw new Error("status " + res.status); }
      return res.json();
    }).then(function (data) {
      if (!data) { return; }
      failures = 0;
      var approval = data.approval || "pending";
      if (step === null) { step = data.step; }
      if (approval !== shown || data.step !== step) {
        reload();
        return;
      }
      schedule();
    }).catch(function () {
      failures += 1;
      if (failures < 5) { schedule(); }
    });
  }

  schedule();
})();
