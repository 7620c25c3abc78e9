// The console's shared script: writes carry the session's CSRF token; logout; language.
"use strict";
window.scrm = {
  csrf: function () { return document.body.dataset.csrf || ""; },
  api: async function (method, path, body) {
    const init = { method: method, credentials: "same-origin", headers: {} };
    if (method !== "GET") { init.headers["X-CSRF-Token"] = window.scrm.csrf(); }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(path, init);
    const data = await answer.json().catch(function () { return {}; });
    if (!answer.ok) { throw new Error(data.detail || answer.status); }
    return data;
  },
  el: function (tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  },
};
document.addEventListener("DOMContentLoaded", function () {
  const out = document.getElementById("logout");
  if (out) {
    out.addEventListener("click", async function () {
      try { await window.scrm.api("POST", "/console/logout"); } catch (e) { /* gone anyway */ }
      window.location.assign("/console/login");
    });
  }
  document.querySelectorAll("button.lang").forEach(function (button) {
    button.addEventListener("click", async function () {
      await window.scrm.api("POST", "/console/lang/" + button.dataset.lang);
      window.location.reload();
    });
  });
});
