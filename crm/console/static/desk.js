// Agent desk over /v1/agent/*: queue (pushed over /console/ws/desk, polled as fallback), accept, reply, resolve, transfer, feedback.
"use strict";
(function () {
  const api = function (m, p, b) { return window.scrm.api(m, p, b); };
  const el = function (t, x, c) { return window.scrm.el(t, x, c); };
  let agent = "";
  let current = null;
  // The desk API lists the queue; the tickets this agent accepted are kept for this tab.
  const mine = new Set(JSON.parse(sessionStorage.getItem("scrm-mine") || "[]"));
  const keepMine = function () { sessionStorage.setItem("scrm-mine", JSON.stringify(Array.from(mine))); };
  const status = function (text) { document.getElementById("desk-status").textContent = text; };

  async function side(customer) {
    const box = document.getElementById("side");
    box.replaceChildren();
    if (!customer || document.getElementById("desk").dataset.customers !== "yes") { return; }
    try {
      const p = await api("GET", "/v1/customers/" + encodeURIComponent(customer) + "/profile");
      box.append(el("dt", "id"), el("dd", p.customer_id));
      const link = el("a", "360 ›");
      link.href = "/console/customers/" + encodeURIComponent(customer);
      box.append(el("dt", ""), el("dd", "")); box.lastChild.append(link);
      Object.entries(p.segment || {}).concat(Object.entries(p.features || {}).slice(0, 8))
        .forEach(function (kv) { box.append(el("dt", kv[0]), el("dd", kv[1])); });
      (p.tags || []).forEach(function (t) { box.append(el("dt", "tag"), el("dd", t.tag || t)); });
    } catch (e) { box.append(el("dd", e.message)); }
  }
  let suggestedFor = null;
  async function suggest(t) {
    const list = document.getElementById("suggestions");
    if (t.state !== "open" || suggestedFor === t.id + ":" + (t.transcript || []).length) { return; }
    suggestedFor = t.id + ":" + (t.transcript || []).length;
    try {
      const found = await api("GET", "/console/api/desk/tickets/" + encodeURIComponent(t.id) + "/suggestions");
      list.replaceChildren();
      found.suggestions.forEach(function (s) {
        const li = el("li", null, "suggestion");
        const use = el("button", list.dataset.use);
        use.type = "button";
        use.dataset.suggestion = s.id;
        use.addEventListener("click", function () { document.getElementById("reply-text").value = s.answer; });
        li.append(el("span", s.answer, "text"), el("span", " (" + s.intent + ", " + s.similarity + ")", "muted"), use);
        list.append(li);
      });
    } catch (e) { status(e.message); }
  }
  // Live: the console's desk socket says "changed" and the page re-reads the desk API; while
  // it is closed (refused, a proxy without WebSockets) the 3 s poll does the work.
  let live = null;
  function watch() {
    const open = current && current.state === "open" ? current.id : null;
    if (live) { live.send(JSON.stringify({ watch: open })); }
  }
  function connect() {
    const desk = document.getElementById("desk");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/console/ws/desk";
    let socket;
    try { socket = new WebSocket(url); } catch (e) { desk.dataset.live = "poll"; return; }
    socket.onopen = function () { live = socket; desk.dataset.live = "socket"; watch(); };
    socket.onmessage = function () { poll(); };
    socket.onclose = function () { live = null; desk.dataset.live = "poll"; setTimeout(connect, 15000); };
  }
  function showTicket(t) {
    const watched = current && current.id;
    current = t;
    if (watched !== t.id || t.state !== "open") { watch(); }
    suggest(t);
    if (t.state === "open") { mine.add(t.id); } else { mine.delete(t.id); }
    keepMine();
    document.getElementById("ticket-meta").textContent =
      t.id + " · " + t.state + " · " + (t.customer_id || "anonymous") + " · " + t.reason;
    const lines = document.getElementById("lines");
    lines.replaceChildren();
    (t.transcript || []).forEach(function (l) {
      const li = el("li", null, "line " + (l.role || ""));
      li.append(el("span", l.role, "role"), document.createTextNode(" "), el("span", l.text, "text"));
      lines.append(li);
    });
  }
  async function open(id) {
    try { showTicket(await api("GET", "/v1/agent/tickets/" + encodeURIComponent(id))); side(current.customer_id); }
    catch (e) { status(e.message); }
  }
  async function poll() {
    try {
      const tickets = await api("GET", "/v1/agent/queue");
      const listed = new Set(tickets.map(function (t) { return t.id; }));
      for (const id of Array.from(mine)) {
        if (listed.has(id)) { continue; }
        try { tickets.push(await api("GET", "/v1/agent/tickets/" + encodeURIComponent(id))); }
        catch (e) { mine.delete(id); }
      }
      keepMine();
      const list = document.getElementById("queue");
      list.replaceChildren();
      tickets.forEach(function (t) {
        if (t.state !== "pending" && t.state !== "open") { mine.delete(t.id); keepMine(); return; }
        const li = el("li", null, "ticket " + t.state);
        li.dataset.ticket = t.id;
        const label = t.id + " · " + t.skill + " · " + (t.position ? "#" + t.position : t.state);
        li.append(el("span", label));
        if (t.state === "pending") {
          const b = el("button", document.documentElement.lang === "en" ? "Accept" : "接入");
          b.type = "button"; b.dataset.accept = t.id;
          b.addEventListener("click", async function () {
            try { showTicket(await api("POST", "/v1/agent/tickets/" + t.id + "/accept", { agent_id: agent })); side(current.customer_id); status("accepted " + t.id); poll(); }
            catch (e) { status(e.message); }
          });
          li.append(b);
        } else {
          const b = el("button", "›"); b.type = "button"; b.setAttribute("aria-label", "open " + t.id);
          b.addEventListener("click", function () { open(t.id); });
          li.append(b);
        }
        list.append(li);
      });
      if (current && current.state === "open") {  // live: new lines of the open ticket
        try { showTicket(await api("GET", "/v1/agent/tickets/" + encodeURIComponent(current.id))); }
        catch (e) { status(e.message); }
      }
    } catch (e) { status(e.message); }
  }
  async function act(path, body) {
    if (!current) { status("no ticket"); return; }
    try {
      const t = await api("POST", "/v1/agent/tickets/" + current.id + path, Object.assign({ agent_id: agent }, body || {}));
      if (t && t.transcript) { showTicket(t); }
      status("ok: " + path); poll();
    } catch (e) { status(e.message); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    agent = document.getElementById("desk").dataset.agent;
    document.getElementById("register").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const skills = document.getElementById("skills").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      try { await api("PUT", "/v1/agent/agents/" + encodeURIComponent(agent), { skills: skills });
        document.getElementById("duty").textContent = "on duty: " + agent; poll(); }
      catch (e) { document.getElementById("duty").textContent = e.message; }
    });
    document.getElementById("reply").addEventListener("submit", function (ev) {
      ev.preventDefault();
      const box = document.getElementById("reply-text");
      act("/reply", { text: box.value }).then(function () { box.value = ""; });
    });
    document.getElementById("resolve").addEventListener("submit", async function (ev) {
      ev.preventDefault();
      if (!current) { return; }
      const outcome = document.getElementById("outcome").value;
      try { await api("POST", "/v1/agent/tickets/" + current.id + "/feedback", { agent_id: agent, kind: "resolved", outcome: outcome }); }
      catch (e) { status(e.message); }
      act("/close");
    });
    document.getElementById("transfer").addEventListener("click", function () { act("/transfer-to-bot"); });
    document.querySelectorAll("[data-feedback]").forEach(function (b) {
      b.addEventListener("click", async function () {
        if (!current) { return; }
        const body = { agent_id: agent, kind: b.dataset.feedback };
        if (b.dataset.feedback === "intent_corrected") { body.label = document.getElementById("right-intent").value; }
        try { await api("POST", "/v1/agent/tickets/" + current.id + "/feedback", body); status("feedback: " + body.kind); }
        catch (e) { status(e.message); }
      });
    });
    poll();
    connect();
    let ticks = 0;  // with the socket open, a slow safety poll (30 s); without it, every 3 s
    setInterval(function () { ticks += 1; if (!live || ticks % 10 === 0) { poll(); } }, 3000);
  });
})();
