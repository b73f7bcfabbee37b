/* labgate console. Plain JavaScript, no framework, no inline script (strict CSP).
 * Every text is set with textContent, never innerHTML, so message content
 * cannot become markup. The session cookie is HttpOnly; the CSRF token comes
 * from /api/admin/session and is sent as X-CSRF-Token on every POST. */
"use strict";

const state = { csrf: null, me: null, events: null, pages: [] };
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  }
  const resp = await fetch(path, { method, headers, credentials: "same-origin",
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401 && !path.startsWith("/console/login")) { showLogin(); throw new Error("login needed"); }
  if (!resp.ok) {
    const detail = data && (data.detail || data.error ||
      (data.issue && data.issue[0] && data.issue[0].details && data.issue[0].details.text));
    throw new Error(detail || ("HTTP " + resp.status));
  }
  return data;
}

function fmtAge(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
const fmtTime = (t) => (t ? new Date(t).toLocaleString("nb-NO") : "–");
const badge = (s) => el("span", { class: "badge " + s, text: s });
const note = (text, kind = "info") => el("div", { class: "msg " + kind, role: "status", text });

function table(headers, rows, attrs = {}) {
  for (const row of rows) {   // labels for the stacked phone layout (CSS td::before)
    [...row.children].forEach((td, i) => { if (headers[i]) td.setAttribute("data-label", headers[i]); });
  }
  return el("div", { class: "scroll" },
    el("table", attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)));
}

/* ---------- login ---------- */

function showLogin(message) {
  stopEvents();
  $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  const err = el("div");
  const form = el("form", { class: "card login", id: "login-form" },
    el("h1", { text: "Log in" }),
    el("label", {}, "User name", el("input", { name: "name", autocomplete: "username", required: true })),
    el("label", {}, "Password", el("input", { name: "password", type: "password",
                                              autocomplete: "current-password", required: true })),
    err, el("button", { type: "submit", text: "Log in" }));
  if (message) err.append(note(message, "error"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    try {
      const me = await api("/console/login", { method: "POST",
        body: { name: form.elements.name.value, password: form.elements.password.value } });
      state.csrf = me.csrf; state.me = me;
      enter();
    } catch (e) { err.append(note("Login failed: " + e.message, "error")); }
  });
  main().replaceChildren(form);
}

function enter() {
  $("#nav").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = state.me.name;
  if (!location.hash || location.hash === "#/login") location.hash = "#/overview";
  else route();
}

/* ---------- overview ---------- */

function chart(perMinute) {
  const max = Math.max(1, ...perMinute);
  const svg = el("svg:svg", { class: "chart", viewBox: "0 0 180 36", role: "img",
                              "aria-label": "delivered per minute, last hour" });
  svg.append(el("svg:line", { x1: 0, y1: 35.5, x2: 180, y2: 35.5 }));
  perMinute.forEach((n, i) => {
    if (!n) return;
    const h = Math.max(1, Math.round((n / max) * 34));
    svg.append(el("svg:rect", { x: i * 3, y: 35 - h, width: 2, height: h },
                  el("svg:title", { text: n + " delivered, " + (59 - i) + " min ago" })));
  });
  return svg;
}

function renderOverview(d, root) {
  const dests = d.destinations.map((x) => el("tr", { "data-dest": x.name },
    el("td", { text: x.name }), el("td", { text: x.type + " → " + x.system }),
    el("td", { class: "num", "data-field": "pending", text: x.pending }),
    el("td", { class: "num", "data-field": "held", text: x.held }),
    el("td", { class: "num", "data-field": "oldest", text: fmtAge(x.oldest_waiting_s) }),
    el("td", { class: "num", "data-field": "delivered", text: x.delivered_last_hour }),
    el("td", {}, chart(x.delivered_per_minute)),
    el("td", { class: "num" + (x.failures_last_hour ? " warn" : ""), "data-field": "failures",
               text: x.failures_last_hour }),
    el("td", { class: "num" + (x.dead ? " bad" : ""), "data-field": "dead", text: x.dead })));
  const sources = d.sources.map((s) => el("tr", { "data-source": s.source },
    el("td", { text: s.source }),
    el("td", { class: "num", "data-field": "accepted", text: s.accepted }),
    el("td", { class: "num" + (s.rejected ? " bad" : ""), "data-field": "rejected", text: s.rejected }),
    el("td", { class: "num", "data-field": "unrouted", text: s.unrouted })));
  const routes = d.routes.map((r) => el("tr", {}, el("td", { text: r.name }),
    el("td", { text: r.sources.join(", ") }), el("td", { text: r.message_types.join(", ") }),
    el("td", { text: r.to.join(", ") })));
  const listeners = d.listeners.map((l) => el("tr", { "data-listener": l.name },
    el("td", { text: l.name }), el("td", { class: "num", text: l.port }),
    el("td", { class: "num", text: (l.stats.messages_received ?? "–") }),
    el("td", { class: "wrap", text: l.peers.length
      ? l.peers.map((p) => p.host + ":" + p.port + " (" + (p.system || "?") + ", " + p.messages + " msgs)").join("; ")
      : "no peer connected" })));
  const crit = d.critical_open.map((c) => el("tr", {},
    el("td", {}, el("a", { href: "#/message/" + c.id, text: "#" + c.id })),
    el("td", { text: c.source }), el("td", { text: c.control_id }),
    el("td", { class: "num bad", text: fmtAge(c.waiting_s) })));
  const inst = d.instruments.map((i) => el("tr", {}, el("td", { text: i.name }),
    el("td", { text: i.site || "" }), el("td", { class: "bad", text: (i.analyses || []).join(", ") || "locked" })));
  const totals = d.destinations.reduce((a, x) => ({ pending: a.pending + x.pending + x.held,
    dead: a.dead + x.dead, delivered: a.delivered + x.delivered_last_hour }), { pending: 0, dead: 0, delivered: 0 });
  const rejected = d.sources.reduce((a, s) => a + s.rejected, 0);
  root.replaceChildren(
    el("div", { class: "tiles" },
      tile("Waiting", totals.pending, "tile-waiting"), tile("Delivered last hour", totals.delivered, "tile-delivered"),
      tile("Dead letters", totals.dead, "tile-dead"), tile("Rejected, 24 h", rejected, "tile-rejected"),
      tile("Critical to phone", d.critical_open.length, "tile-critical")),
    el("h2", { text: "Destinations" }),
    dests.length ? table(["Destination", "Type", "Pending", "Held", "Oldest waiting", "Delivered/h",
                          "Last hour", "Failures/h", "Dead"], dests, { id: "destinations" })
                 : el("p", { class: "empty", text: "No destinations configured." }),
    el("h2", { text: "Received in the last 24 hours" }),
    sources.length ? table(["Source", "Accepted", "Rejected", "Unrouted"], sources, { id: "sources" })
                   : el("p", { class: "empty", text: "Nothing received in the last 24 hours." }),
    el("h2", { text: "Routes" }),
    routes.length ? table(["Route", "Sources", "Message types", "To"], routes)
                  : el("p", { class: "empty", text: "No routes configured." }),
    el("h2", { text: "Listeners" }),
    listeners.length ? table(["Listener", "Port", "Messages", "Connected peers"], listeners)
                     : el("p", { class: "empty", text: "No listeners." }),
    el("h2", { text: "Instruments locked by QC" }),
    inst.length ? table(["Instrument", "Site", "Locked analyses"], inst)
                : el("p", { class: "empty", text: "No instrument is locked." }),
    el("h2", { text: "Critical results waiting for a phone call" }),
    crit.length ? table(["Message", "Source", "Control id", "Waiting"], crit, { id: "critical-open" })
                : el("p", { class: "empty", text: "None waiting." }),
    el("p", { class: "live", id: "updated", text: "Updated " + fmtTime(d.generated_at) }));
}

function tile(label, n, id) {
  return el("div", { class: "tile", id }, el("div", { class: "n", text: n }), el("div", { class: "muted", text: label }));
}

function stopEvents() { if (state.events) { state.events.close(); state.events = null; } }

async function pageOverview() {
  const root = el("div", { id: "overview" }, el("p", { class: "muted", text: "Loading…" }));
  main().replaceChildren(el("h1", { text: "Overview" }), root);
  renderOverview(await api("/api/admin/overview"), root);
  const es = new EventSource("/api/admin/events");
  es.addEventListener("overview", (ev) => { if (document.body.contains(root)) renderOverview(JSON.parse(ev.data), root); });
  state.events = es;
}

/* ---------- messages ---------- */

const FILTERS = [["status", "Status", ["", "accepted", "rejected", "unrouted", "dead", "discarded"]],
  ["source", "Source"], ["destination", "Destination"], ["type", "Message type"],
  ["control_id", "Control id"], ["order", "Order number"], ["specimen", "Specimen number"],
  ["patient", "National id number (audited)"], ["since", "From", "datetime-local"], ["until", "To", "datetime-local"]];

function queryFromHash() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

async function pageMessages() {
  const params = queryFromHash();
  const form = el("form", { class: "filters card", id: "message-filters" },
    FILTERS.map(([name, label, kind]) => el("label", {}, label, Array.isArray(kind)
      ? el("select", { name }, kind.map((o) => el("option", { value: o, text: o || "any", selected: params.get(name) === o })))
      : el("input", { name, type: kind || "search", value: params.get(name) || "" }))),
    el("div", { class: "row" }, el("button", { type: "submit", text: "Search" })));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = "#/messages?" + q.toString();
  });
  const results = el("div", { id: "message-results" });
  const bulk = el("div", { class: "card row", id: "bulk" });
  main().replaceChildren(el("h1", { text: "Messages" }), form, bulk, results);
  const q = new URLSearchParams(params);
  for (const k of ["since", "until"]) if (q.get(k)) q.set(k, new Date(q.get(k)).toISOString());
  await loadPage(results, q, []);
  if (["rejected", "dead"].includes(params.get("status"))) {
    const reason = el("input", { name: "reason", placeholder: "reason for bulk replay", id: "bulk-reason" });
    const out = el("span");
    bulk.append(reason, el("button", { type: "button", id: "bulk-replay", text: "Replay all matching", onclick: async () => {
      if (!reason.value.trim()) { out.replaceChildren(note("Give a reason.", "error")); return; }
      const filter = Object.fromEntries(q.entries());
      try {
        const r = await api("/api/admin/messages/replay", { method: "POST", body: { filter, reason: reason.value } });
        out.replaceChildren(note("Replayed " + r.count + ": " + JSON.stringify(r.summary)));
      } catch (e) { out.replaceChildren(note(e.message, "error")); }
    } }), out);
  } else bulk.remove();
}

async function loadPage(results, q, history) {
  const data = await api("/api/admin/messages?" + q.toString());
  const rows = data.messages.map((m) => el("tr", { "data-id": m.id, "data-control-id": m.control_id || "" },
    el("td", {}, el("a", { href: "#/message/" + m.id, text: "#" + m.id })),
    el("td", { text: fmtTime(m.received_at) }), el("td", { text: m.source }),
    el("td", { text: m.message_type || "" }), el("td", { text: m.control_id || "" }),
    el("td", {}, badge(m.discarded_at ? "discarded" : m.status)),
    el("td", { class: "rule-codes", text: m.rule_codes || "" }),
    el("td", {}, m.outbox.map((o) => el("span", {}, badge(o.state), " " + o.destination + " "))),
    el("td", { text: [m.order_number, m.specimen_number].filter(Boolean).join(" / ") })));
  const nav = el("div", { class: "row" });
  if (history.length) nav.append(el("button", { type: "button", class: "secondary", text: "← Newer", onclick: () => {
    const prev = history.slice(0, -1); const p = new URLSearchParams(q);
    if (history[history.length - 1]) p.set("after", history[history.length - 1]); else p.delete("after");
    loadPage(results, p, prev);
  } }));
  if (data.next_after) nav.append(el("button", { type: "button", class: "secondary", id: "older", text: "Older →", onclick: () => {
    const p = new URLSearchParams(q); p.set("after", data.next_after);
    loadPage(results, p, [...history, q.get("after")]);
  } }));
  results.replaceChildren(rows.length
    ? table(["Id", "Received", "Source", "Type", "Control id", "Status", "Rule codes", "Delivery", "Order / specimen"], rows, { id: "messages" })
    : el("p", { class: "empty", text: "No message matches." }), nav);
}

/* ---------- message detail ---------- */

function renderHl7(raw) {
  const segs = raw.split(/\r\n|\r|\n/).filter((s) => s.length);
  return el("pre", { class: "hl7" }, segs.map((seg) => {
    const parts = seg.split("|"); const name = parts[0];
    const line = el("span", { class: "seg" }, el("span", { class: "name", text: name }));
    parts.slice(1).forEach((f, i) => {
      const n = name === "MSH" ? i + 2 : i + 1;
      line.append(el("span", { class: "sep", text: "|" }), el("span", { class: "f", title: name + "-" + n, text: f }));
    });
    return line;
  }));
}

function renderAstm(raw) {
  const lines = raw.split(/\r\n|\r|\n/).filter((s) => s.length);
  return el("pre", { class: "astm" }, lines.map((line) => {
    const parts = line.replace(/^\d(?=[A-Z])/, "").split("|"); const type = parts[0];
    const out = el("span", { class: "seg" }, el("span", { class: "name", text: type }));
    parts.slice(1).forEach((f, i) => out.append(el("span", { class: "sep", text: "|" }),
      el("span", { class: "f", title: type + "-" + (i + 2), text: f })));
    return out;
  }));
}

function prettyXml(raw) {
  const doc = new DOMParser().parseFromString(raw, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) return raw;
  const out = [];
  (function walk(node, depth) {
    const pad = "  ".repeat(depth);
    for (const c of node.childNodes) {
      if (c.nodeType === 3) { if (c.nodeValue.trim()) out.push(pad + c.nodeValue.trim()); continue; }
      if (c.nodeType !== 1) continue;
      const attrs = [...c.attributes].map((a) => " " + a.name + '="' + a.value + '"').join("");
      const kids = [...c.childNodes].filter((k) => k.nodeType === 1 || (k.nodeType === 3 && k.nodeValue.trim()));
      if (!kids.length) out.push(pad + "<" + c.nodeName + attrs + "/>");
      else if (kids.length === 1 && kids[0].nodeType === 3) out.push(pad + "<" + c.nodeName + attrs + ">" + kids[0].nodeValue.trim() + "</" + c.nodeName + ">");
      else { out.push(pad + "<" + c.nodeName + attrs + ">"); walk(c, depth + 1); out.push(pad + "</" + c.nodeName + ">"); }
    }
  })(doc, 0);
  return out.join("\n");
}

function renderRaw(m) {
  if (m.raw === null) return el("p", { class: "empty", text: "Content pruned by retention " + fmtTime(m.pruned_at) + "." });
  const raw = m.raw;
  if (raw.startsWith("MSH")) return renderHl7(raw);
  if (raw.trimStart().startsWith("<")) return el("pre", { class: "xml", text: prettyXml(raw) });
  if (/^\d?H\|/.test(raw)) return renderAstm(raw);
  return el("pre", { text: raw });
}

async function pageMessage(id) {
  const m = await api("/api/admin/messages/" + id);
  const out = el("div", { id: "action-result" });
  const reason = el("input", { id: "action-reason", placeholder: "reason (required)" });
  const act = (action) => async () => {
    if (!reason.value.trim()) { out.replaceChildren(note("Give a reason.", "error")); return; }
    try {
      const r = await api("/api/admin/messages/" + id + "/" + action, { method: "POST", body: { reason: reason.value } });
      await pageMessage(id);
      $("#action-result").replaceChildren(note(action + ": " + r.result + (r.detail ? " (" + r.detail + ")" : "")));
    } catch (e) { out.replaceChildren(note(e.message, "error")); }
  };
  const verdict = m.verdict.map((i) => el("tr", { "data-code": i.code },
    el("td", {}, el("span", { class: i.severity === "error" || i.severity === "fatal" ? "bad" : (i.severity === "warning" ? "warn" : "") , text: i.severity })),
    el("td", { class: "rule-code", text: i.code }), el("td", { text: i.location || "" }),
    el("td", { class: "wrap", text: i.text || "" })));
  const outbox = m.outbox.map((o) => el("tr", { "data-outbox": o.id }, el("td", { text: o.destination }),
    el("td", { class: "outbox-state" }, badge(o.state)), el("td", { class: "num", text: o.attempts }),
    el("td", { text: fmtTime(o.next_attempt_at) }), el("td", { class: "wrap", text: o.last_error || "" })));
  const attempts = m.attempts.map((a) => el("tr", {}, el("td", { text: fmtTime(a.attempted_at) }),
    el("td", { text: a.destination }), el("td", {}, badge(a.outcome)), el("td", { class: "num", text: a.duration_ms + " ms" }),
    el("td", { class: "wrap", text: a.detail || "" })));
  const related = m.related.map((r) => el("tr", {}, el("td", {}, el("a", { href: "#/message/" + r.id, text: "#" + r.id })),
    el("td", { text: fmtTime(r.received_at) }), el("td", { text: r.source }), el("td", { text: r.message_type || "" }),
    el("td", {}, badge(r.status))));
  const kv = [["Status", badge(m.discarded_at ? "discarded" : m.status)], ["Received", fmtTime(m.received_at)],
    ["Source", m.source + " (" + m.protocol + (m.peer ? ", " + m.peer : "") + ")"], ["Message type", m.message_type || "–"],
    ["Control id", m.control_id || "–"], ["Order number", m.order_number || "–"], ["Specimen number", m.specimen_number || "–"],
    ["Replays", m.replays], ["Duplicates received", m.duplicates]];
  if (m.discarded_at) kv.push(["Discarded", fmtTime(m.discarded_at) + ": " + m.discard_reason]);
  if (m.critical_ack) kv.push(["Critical result phoned", m.critical_ack.phoned_to + " at " + fmtTime(m.critical_ack.phoned_at) + " (by " + m.critical_ack.acknowledged_by + ")"]);
  main().replaceChildren(
    el("h1", { text: "Message #" + m.id }),
    el("div", { class: "card" }, el("dl", { class: "kv", id: "message-facts" }, kv.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]))),
    el("div", { class: "card row", id: "actions" }, reason,
      el("button", { type: "button", id: "replay", text: "Replay", onclick: act("replay") }),
      el("button", { type: "button", id: "retry", class: "secondary", text: "Retry now", onclick: act("retry") }),
      el("button", { type: "button", id: "discard", class: "danger", text: "Discard", onclick: act("discard") }), out),
    el("h2", { text: "Verdict" }),
    verdict.length ? table(["Severity", "Rule", "Where", "Text"], verdict, { id: "verdict" }) : el("p", { class: "empty", text: "No findings." }),
    el("h2", { text: "Delivery" }),
    outbox.length ? table(["Destination", "State", "Attempts", "Next attempt", "Last error"], outbox, { id: "outbox" })
                  : el("p", { class: "empty", text: "Not queued for any destination." }),
    el("h2", { text: "Delivery attempts" }),
    attempts.length ? table(["When", "Destination", "Outcome", "Took", "Detail"], attempts, { id: "attempts" })
                    : el("p", { class: "empty", text: "No attempt yet." }),
    el("h2", { text: "Raw message" }), el("div", { class: "card", id: "raw" }, renderRaw(m)),
    el("h2", { text: "Canonical FHIR bundle" }),
    el("div", { class: "card" }, m.bundle ? el("pre", { id: "bundle", text: JSON.stringify(m.bundle, null, 2) })
                                          : el("p", { class: "empty", text: "No bundle (not parsed, or pruned)." })),
    el("h2", { text: "Related order and specimen" }),
    related.length ? table(["Message", "Received", "Source", "Type", "Status"], related)
                   : el("p", { class: "empty", text: "No other message about this order or specimen." }));
}

/* ---------- instruments ---------- */

async function pageInstruments() {
  const d = await api("/api/admin/instruments");
  const root = el("div", { id: "instruments" });
  main().replaceChildren(el("h1", { text: "Instruments" }), root);
  if (!d.instruments.length) {
    root.append(el("p", { class: "empty", text: d.available ? "No instrument is registered."
      : "The instrument registry is not available in this gateway yet." }));
    return;
  }
  const rows = d.instruments.map((i) => el("tr", { "data-instrument": i.serial },
    el("td", { text: i.serial + (i.model ? " (" + i.model + ")" : "") + (i.enabled === false ? " – disabled" : "") }),
    el("td", { text: i.site || "" }), el("td", { text: i.protocol || "" }),
    el("td", { text: fmtTime(i.last_seen) }),
    el("td", { class: "wrap qc" }, (i.analyses || []).map((a) => el("div", { "data-analysis": a.analysis },
      a.analysis + ": ", el("span", { class: "qc-state " + (a.state === "ok" ? "ok" : "bad"), text: a.state }),
      el("span", { class: "muted", text: " last QC " + fmtTime(a.last_qc) + ", last passed " + fmtTime(a.last_passed) })))),
    el("td", { class: "wrap" }, (i.qc_recent || []).map((q) => el("div", {},
      fmtTime(q.performed_at) + " " + q.analysis + " " + (q.value ?? "") + " " + (q.unit || "") + " ",
      el("span", { class: q.result === "pass" ? "ok" : (q.result === "fail" ? "bad" : "muted"), text: q.result })))),
    el("td", { class: "wrap", text: (i.operators || []).map((o) => o.name + " (" + o.operator_id + ")").join(", ") })));
  root.append(table(["Instrument", "Site", "Protocol", "Last seen", "QC state per analysis", "Recent QC runs", "Certified operators"], rows, { id: "instrument-list" }));
}

/* ---------- critical results ---------- */

async function pageCritical() {
  const all = queryFromHash().get("all") === "1";
  const d = await api("/api/admin/critical" + (all ? "?all=1" : ""));
  const rows = d.critical.map((c) => {
    const who = el("input", { name: "phoned_to", placeholder: "phoned to (name, role)" });
    const when = el("input", { name: "phoned_at", type: "datetime-local" });
    const msg = el("span");
    const cell = c.phoned_to
      ? el("td", { class: "wrap ok", text: "Phoned to " + c.phoned_to + " at " + fmtTime(c.phoned_at) + " (by " + c.acknowledged_by + ")" })
      : el("td", { class: "wrap" }, el("div", { class: "row" }, who, when,
          el("button", { type: "button", class: "ack", text: "Acknowledge", onclick: async () => {
            if (!who.value.trim()) { msg.replaceChildren(note("Who was phoned?", "error")); return; }
            try {
              await api("/api/admin/critical/" + c.id + "/ack", { method: "POST", body: {
                phoned_to: who.value, phoned_at: when.value ? new Date(when.value).toISOString() : "" } });
              await pageCritical();
            } catch (e) { msg.replaceChildren(note(e.message, "error")); }
          } }), msg));
    return el("tr", { "data-id": c.id }, el("td", {}, el("a", { href: "#/message/" + c.id, text: "#" + c.id })),
      el("td", { text: fmtTime(c.received_at) }), el("td", { text: c.source }),
      el("td", { class: "wrap bad", text: c.observations.map((o) => (o.display || o.code) + " " + o.value + " " + (o.unit || "")).join("; ") }),
      el("td", { text: [c.order_number, c.specimen_number].filter(Boolean).join(" / ") }), cell);
  });
  main().replaceChildren(el("h1", { text: "Critical results" }),
    el("p", {}, el("a", { href: all ? "#/critical" : "#/critical?all=1", text: all ? "Show only those waiting" : "Show acknowledged too" })),
    rows.length ? table(["Message", "Received", "Source", "Result", "Order / specimen", "Phoned"], rows, { id: "critical" })
                : el("p", { class: "empty", text: "No critical result is waiting for a phone call." }));
}

/* ---------- router ---------- */

async function route() {
  stopEvents();
  const hash = location.hash.replace(/^#\/?/, "");
  const [path] = hash.split("?");
  const [page, arg] = path.split("/");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === (page === "message" ? "messages" : page)));
  try {
    if (page === "messages") await pageMessages();
    else if (page === "message" && arg) await pageMessage(arg);
    else if (page === "instruments") await pageInstruments();
    else if (page === "critical") await pageCritical();
    else await pageOverview();
  } catch (e) {
    if (e.message !== "login needed") main().replaceChildren(note("Could not load: " + e.message, "error"));
  }
}

async function start() {
  $("#logout").addEventListener("click", async () => {
    try { await api("/console/logout", { method: "POST", body: {} }); } catch (e) { /* shown as login */ }
    state.csrf = null; showLogin("Logged out.");
  });
  window.addEventListener("hashchange", () => { if (state.me) route(); });
  try {
    const me = await api("/api/admin/session");
    state.csrf = me.csrf; state.me = me;
    enter();
  } catch (e) {
    if (e.message !== "login needed") showLogin(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
