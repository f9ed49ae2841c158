// nidan portal: every page works without this file; CSP allows only 'self' scripts, so
// nothing here is inline. It shows no text of its own: texts come from the page.

// The browser's time zone, so pages show times in it (the server checks the name against
// the time-zone database and falls back to the operator's zone).
(function () {
  "use strict";
  try {
    var tz = window.Intl && Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!tz || tz.length > 64 || !/^[A-Za-z0-9_+\-\/]+$/.test(tz)) { return; }
    // Over HTTPS named and flagged like the gateway's own cookies: `__Host-` + Secure.
    var https = window.location.protocol === "https:";
    var name = (https ? "__Host-" : "") + "nidan_tz";
    if (document.cookie.split("; ").indexOf(name + "=" + tz) >= 0) { return; }
    document.cookie = name + "=" + tz + "; path=/; max-age=31536000; samesite=lax" +
      (https ? "; secure" : "");
  } catch (e) { /* times stay in the operator's zone */ }
})();

// The app-approval waiting page polls the flow's status and reloads when it changes
// (without JavaScript, a meta refresh inside <noscript> reloads it).
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

// The app page after the QR code: polls the enrolled apps and moves on once the app has
// enrolled (without JavaScript, a link checks by hand).
(function () {
  "use strict";
  var box = document.getElementById("nidan-enroll");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-poll");
  var before = parseInt(box.getAttribute("data-count") || "0", 10);
  var done = box.getAttribute("data-done");
  var started = Date.now();
  var failures = 0;
  var INTERVAL = 2000;
  var GIVE_UP = 15 * 60 * 1000;

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
      if (!res.ok) { throw new Error("status " + res.status); }
      return res.json();
    }).then(function (data) {
      failures = 0;
      if (data && data.apps && data.apps.length > before) {
        window.location.assign(done);
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

// Passkeys (WebAuthn): "log in with a passkey" on the ID page and "register a passkey" on
// the passkeys page. Both controls carry `hidden` in the HTML and are shown only here, in
// browsers that can do WebAuthn; the portal works without them.
(function () {
  "use strict";
  if (!window.fetch || !window.PublicKeyCredential || !navigator.credentials) { return; }
  // WebAuthn needs a secure context on a domain name: on http://127.0.0.1/ or any IP
  // address it can only fail, so the passkey controls stay hidden there.
  var host = window.location.hostname;
  if (!window.isSecureContext || /^[0-9.]+$/.test(host) || host.indexOf(":") >= 0 ||
      host.charAt(0) === "[") { return; }

  function toBuffer(b64url) {
    var s = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = window.atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return window.btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The JSON API wants Content-Type: application/json from our own origin.
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) { throw new Error(data.error || ("status " + res.status)); }
        return data;
      });
    });
  }

  function credentialJson(cred) {
    var r = cred.response;
    var out = {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: { clientDataJSON: toB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) { out.response.attestationObject = toB64url(r.attestationObject); }
    if (r.authenticatorData) { out.response.authenticatorData = toB64url(r.authenticatorData); }
    if (r.signature) { out.response.signature = toB64url(r.signature); }
    if (r.userHandle) { out.response.userHandle = toB64url(r.userHandle); }
    return out;
  }

  function showError(box, text) {
    var p = box.querySelector(".error");
    if (p) { p.textContent = text; p.hidden = false; }
  }

  var login = document.getElementById("nidan-passkey-login");
  // Passkey autofill (conditional mediation): the ID field (autocomplete="username
  // webauthn") offers the browser's passkeys; the button asks explicitly. Only one request
  // can be open, so the button first cancels the autofill one.
  var pending = null;
  function conditional() {
    var PKC = window.PublicKeyCredential;
    if (!PKC.isConditionalMediationAvailable || !window.AbortController) { return; }
    PKC.isConditionalMediationAvailable().then(function (ok) {
      if (!ok) { return; }
      pending = new AbortController();
      var signal = pending.signal;
      post(login.getAttribute("data-start"), { return_to: login.getAttribute("data-rd") || "/" })
        .then(function (o) {
          return navigator.credentials.get({
            mediation: "conditional",
            signal: signal,
            publicKey: {
              challenge: toBuffer(o.challenge),
              rpId: o.rpId,
              timeout: o.timeout,
              userVerification: o.userVerification,
              allowCredentials: []
            }
          });
        })
        .then(function (cred) {
          if (!cred) { throw new Error("no credential"); }
          return post(login.getAttribute("data-finish"), { credential: credentialJson(cred) });
        })
        .then(function (data) { window.location.assign(data.redirect || "/"); })
        .catch(function (e) {
          if (!signal.aborted && e && e.name !== "AbortError") {
            showError(login, login.getAttribute("data-error"));
          }
        });
    }).catch(function () { /* the button still works */ });
  }
  if (login) {
    var button = login.querySelector("button");
    login.hidden = false;
    conditional();
    button.addEventListener("click", function () {
      button.disabled = true;
      if (pending) { pending.abort(); pending = null; }
      post(login.getAttribute("data-start"), { return_to: login.getAttribute("data-rd") || "/" })
        .then(function (o) {
          return navigator.credentials.get({
            publicKey: {
              challenge: toBuffer(o.challenge),
              rpId: o.rpId,
              timeout: o.timeout,
              userVerification: o.userVerification,
              allowCredentials: []
            }
          });
        })
        .then(function (cred) {
          if (!cred) { throw new Error("no credential"); }
          return post(login.getAttribute("data-finish"), { credential: credentialJson(cred) });
        })
        .then(function (data) { window.location.assign(data.redirect || "/"); })
        .catch(function () {
          button.disabled = false;
          showError(login, login.getAttribute("data-error"));
        });
    });
  }

  var reg = document.getElementById("nidan-passkey-register");
  if (reg) {
    reg.hidden = false;
    reg.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = reg.querySelector("input[name=name]").value;
      var submit = reg.querySelector("button");
      submit.disabled = true;
      post(reg.getAttribute("data-start"), {})
        .then(function (o) {
          return navigator.credentials.create({
            publicKey: {
              challenge: toBuffer(o.challenge),
              rp: o.rp,
              user: { id: toBuffer(o.user.id), name: o.user.name, displayName: o.user.displayName },
              pubKeyCredParams: o.pubKeyCredParams,
              timeout: o.timeout,
              attestation: o.attestation,
              authenticatorSelection: o.authenticatorSelection,
              excludeCredentials: (o.excludeCredentials || []).map(function (c) {
                return { type: c.type, id: toBuffer(c.id) };
              })
            }
          });
        })
        .then(function (cred) {
          if (!cred) { throw new Error("no credential"); }
          return post(reg.getAttribute("data-finish"), { name: name, credential: credentialJson(cred) });
        })
        .then(function () { window.location.assign(reg.getAttribute("data-done")); })
        .catch(function () {
          submit.disabled = false;
          showError(reg, reg.getAttribute("data-error"));
        });
    });
  }
})();

// Copy buttons (a new app password): hidden without JavaScript, where the text stays
// selectable; the button names the element to copy and the text to say once copied.
(function () {
  "use strict";
  if (!navigator.clipboard || !window.isSecureContext) { return; }
  var buttons = document.querySelectorAll("button[data-copy]");
  Array.prototype.forEach.call(buttons, function (b) {
    var source = document.getElementById(b.getAttribute("data-copy"));
    if (!source) { return; }
    var status = b.parentNode.querySelector(".copy-status");
    b.hidden = false;
    b.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        if (status) { status.textContent = b.getAttribute("data-copied") || ""; }
      }, function () { /* the text stays selectable */ });
    });
  });
})();
