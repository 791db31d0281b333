// stompbox admin console: plain JavaScript, no build step. It reads the
// admin API of the same origin (the browser sends its credentials; Basic
// auth prompts natively) and never puts API data into HTML: every string
// goes through textContent or an attribute.
"use strict";

(() => {
  const WINDOW_SECONDS = 300; // charts keep the last 5 minutes
  const REFRESH_MS = 2000; // tables re-read their page this often
  const PAGE_SIZE = 50;
  const PEEK_LIMIT = 20;
  const PEEK_PREVIEW = 1024;

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // el builds an element; text children become text nodes, never markup.
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "onclick") e.addEventListener("click", v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- formatting -------------------------------------------------------

  const intFmt = new Intl.NumberFormat("en");
  const rateFmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });

  function fmtInt(n) {
    return typeof n === "number" ? intFmt.format(n) : "–";
  }

  function fmtRate(n) {
    return typeof n === "number" ? rateFmt.format(n) : "–";
  }

  function fmtBytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function fmtDuration(s) {
    if (typeof s !== "number") return "–";
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const t = new Date(iso);
    return isNaN(t) ? String(iso) : t.toLocaleTimeString();
  }

  // ---- API ---------------------------------------------------------------

  // api fetches a path of the admin API; it resolves to the JSON answer or
  // rejects with the API's error text.
  async function api(path, body) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    try {
      data = await res.json();
    } catch {
      // not JSON (a proxy's page, an empty answer): the status says it
    }
    if (!res.ok) {
      const msg = data && typeof data.error === "string" ? data.error : res.statusText;
      throw new Error(`${res.status}: ${msg}`);
    }
    return data;
  }

  function toast(text, ok) {
    const t = $("#toast");
    t.textContent = text;
    t.dataset.state = ok ? "ok" : "error";
    t.classList.add("shown");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("shown"), 8000);
  }

  // confirmAction shows the confirmation dialog; it resolves to null when
  // cancelled, else to the reason typed (or "" without a reason field).
  function confirmAction(text, askReason) {
    const dlg = $("#confirm");
    $("[data-testid=confirm-text]", dlg).textContent = text;
    const label = $("[data-testid=confirm-reason-label]", dlg);
    const reason = $("[data-testid=confirm-reason]", dlg);
    label.hidden = !askReason;
    dlg.returnValue = "";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => {
        resolve(dlg.returnValue === "ok" ? (askReason ? reason.value : "") : null);
      }, { once: true });
      dlg.showModal();
      (askReason ? reason : $("[data-testid=confirm-cancel]", dlg)).focus();
    });
  }

  // act confirms, runs an action and reports its answer (or error).
  async function act(text, askReason, run, after) {
    const reason = await confirmAction(text, askReason);
    if (reason === null) return;
    try {
      const res = await run(reason);
      toast(`${text} → ${JSON.stringify(res)}`, true);
    } catch (err) {
      toast(`${text} failed: ${err.message}`, false);
    }
    after();
  }

  // ---- overview and charts ---------------------------------------------

  const series = { t: [], in: [], out: [], conns: [], queued: [], fsync: [] };
  const charts = {};

  function makeChart(id, labels, colors) {
    const host = document.getElementById(id);
    const opts = {
      width: Math.max(280, host.clientWidth || 480),
      height: 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [{}].concat(labels.map((label, i) => ({ label, stroke: colors[i], width: 2, spanGaps: false }))),
      axes: [{}, { size: 60 }],
    };
    return new uPlot(opts, [[], ...labels.map(() => [])], host);
  }

  function setupCharts() {
    if (typeof uPlot === "undefined") {
      $$(".charts figure div").forEach((d) => (d.textContent = "uPlot is missing: run `make web` and rebuild"));
      return;
    }
    charts.rates = makeChart("chart-rates", ["in", "out"], ["#0969da", "#1a7f37"]);
    charts.conns = makeChart("chart-connections", ["connections"], ["#8250df"]);
    charts.queued = makeChart("chart-queued", ["bytes"], ["#bf8700"]);
    charts.fsync = makeChart("chart-fsync", ["p99 ms"], ["#cf222e"]);
    const resize = () => {
      for (const c of Object.values(charts)) {
        const host = c.root.parentElement;
        if (host && host.clientWidth > 0) c.setSize({ width: host.clientWidth, height: 180 });
      }
    };
    window.addEventListener("resize", resize);
  }

  function pushPoint(ov) {
    const now = Date.now() / 1000;
    const fs = ov.journal && ov.journal.fsync_seconds;
    series.t.push(now);
    series.in.push(ov.messages_in_rate ?? null);
    series.out.push(ov.messages_out_rate ?? null);
    series.conns.push(ov.connections ?? null);
    series.queued.push(ov.queued_bytes ?? null);
    series.fsync.push(fs && typeof fs.p99 === "number" ? fs.p99 * 1000 : null);
    let drop = 0;
    while (drop < series.t.length && series.t[drop] < now - WINDOW_SECONDS) drop++;
    if (drop > 0) for (const k of Object.keys(series)) series[k].splice(0, drop);
    if (!charts.rates) return;
    charts.rates.setData([series.t, series.in, series.out]);
    charts.conns.setData([series.t, series.conns]);
    charts.queued.setData([series.t, series.queued]);
    charts.fsync.setData([series.t, series.fsync]);
  }

  function showOverview(ov) {
    $("#node").textContent = ov.node || "–";
    $("#version").textContent = ov.version || "–";
    $("#uptime").textContent = fmtDuration(ov.uptime_seconds);
    for (const b of $$("#overview [data-field]")) {
      const v = ov[b.dataset.field];
      const f = b.dataset.format;
      b.textContent = f === "bytes" ? fmtBytes(v) : f === "rate" ? fmtRate(v) : fmtInt(v);
    }
    const j = ov.journal;
    $("#journal-state").textContent = !j || !j.enabled ? "off" : j.state + (j.error ? `: ${j.error}` : "");
    const c = ov.cluster;
    $("#cluster-state").textContent = !c || !c.enabled ? "off" : `${c.name || ""} ${c.ready ? "ready" : "not ready"}`;
  }

  // The event stream reconnects by itself after a network error; after a
  // refusal (401, 503: too many streams) it gives up, so a new one is made.
  function openStream() {
    const state = $("#stream");
    const es = new EventSource("/api/events");
    es.addEventListener("open", () => {
      state.textContent = "live";
      state.dataset.state = "live";
    });
    es.addEventListener("overview", (ev) => {
      let ov;
      try {
        ov = JSON.parse(ev.data);
      } catch {
        return;
      }
      showOverview(ov);
      pushPoint(ov);
    });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        state.textContent = "disconnected";
        state.dataset.state = "closed";
        setTimeout(openStream, 5000);
      } else {
        state.textContent = "reconnecting";
        state.dataset.state = "connecting";
      }
    });
  }

  // ---- tables ------------------------------------------------------------

  // Table is one server-side paged list: the state (page, sort, filter)
  // lives here, so a refresh re-reads exactly what the user looks at.
  class Table {
    constructor(name, endpoint, renderRow, extraParams) {
      this.name = name;
      this.endpoint = endpoint;
      this.renderRow = renderRow;
      this.extraParams = extraParams || (() => ({}));
      this.section = document.getElementById(name);
      this.state = { offset: 0, limit: PAGE_SIZE, sort: "", order: "asc", q: "" };
      this.seq = 0; // answers older than the newest request are dropped
      this.total = 0;
      const filter = $(`[data-testid=${name}-filter]`);
      let debounce;
      filter.addEventListener("input", () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => {
          this.state.q = filter.value;
          this.state.offset = 0;
          this.load();
        }, 250);
      });
      $(`[data-testid=${name}-prev]`).addEventListener("click", () => {
        this.state.offset = Math.max(0, this.state.offset - this.state.limit);
        this.load();
      });
      $(`[data-testid=${name}-next]`).addEventListener("click", () => {
        if (this.state.offset + this.state.limit < this.total) this.state.offset += this.state.limit;
        this.load();
      });
      for (const th of $$("th[data-sort]", this.section)) {
        th.tabIndex = 0;
        const sortBy = () => {
          const f = th.dataset.sort;
          if (this.state.sort === f) this.state.order = this.state.order === "asc" ? "desc" : "asc";
          else Object.assign(this.state, { sort: f, order: "asc" });
          this.state.offset = 0;
          this.load();
        };
        th.addEventListener("click", sortBy);
        th.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), sortBy()));
      }
    }

    async load() {
      const seq = ++this.seq;
      const p = new URLSearchParams();
      const st = this.state;
      p.set("offset", st.offset);
      p.set("limit", st.limit);
      if (st.sort) {
        p.set("sort", st.sort);
        p.set("order", st.order);
      }
      if (st.q) p.set("q", st.q);
      for (const [k, v] of Object.entries(this.extraParams())) if (v) p.set(k, v);
      const errBox = $(`[data-testid=${this.name}-error]`);
      let res;
      try {
        res = await api(`${this.endpoint}?${p}`);
      } catch (err) {
        if (seq === this.seq) errBox.textContent = err.message;
        return;
      }
      if (seq !== this.seq) return;
      errBox.textContent = "";
      this.total = res.total || 0;
      // Rows went away under the user's page: show the last page there is.
      if (st.offset > 0 && st.offset >= this.total) {
        st.offset = Math.max(0, Math.floor((this.total - 1) / st.limit) * st.limit);
        this.load();
        return;
      }
      this.render(res.items || []);
    }

    render(items) {
      const tbody = $("tbody", this.section);
      tbody.replaceChildren(...items.map((it) => this.renderRow(it, this)));
      const st = this.state;
      const first = this.total === 0 ? 0 : st.offset + 1;
      $(`[data-testid=${this.name}-range]`).textContent =
        `${fmtInt(first)}–${fmtInt(st.offset + items.length)} of ${fmtInt(this.total)}`;
      $(`[data-testid=${this.name}-prev]`).disabled = st.offset === 0;
      $(`[data-testid=${this.name}-next]`).disabled = st.offset + st.limit >= this.total;
      for (const th of $$("th[data-sort]", this.section)) {
        const on = th.dataset.sort === st.sort;
        th.setAttribute("aria-sort", on ? (st.order === "asc" ? "ascending" : "descending") : "none");
      }
    }
  }

  function cell(col, value, cls) {
    return el("td", { "data-col": col, class: cls }, value);
  }

  function numCell(col, value, fmt = fmtInt) {
    return el("td", { "data-col": col, class: "num", "data-value": value ?? "" }, fmt(value));
  }

  function subscriptionsCell(subs) {
    const td = el("td", { "data-col": "subscriptions" });
    for (const s of subs || []) {
      const parts = [`${s.destination} (${s.ack}`];
      if (s.unacked) parts.push(`, ${s.unacked} unacked`);
      if (s.durable) parts.push(`, durable ${s.durable}`);
      parts.push(")");
      td.append(el("div", { "data-testid": "subscription", "data-sub-id": s.id }, parts.join("")));
    }
    return td;
  }

  function connectionRow(c, table) {
    const close = el("button", {
      type: "button", class: "danger", "data-testid": "close-connection",
      onclick: () => act(`Close connection ${c.id} (${c.user || "no user"})`, true,
        (reason) => api(`/api/connections/${encodeURIComponent(c.id)}/close`, { reason }),
        () => table.load()),
    }, "close");
    return el("tr", { "data-testid": "connection-row", "data-id": c.id, "data-user": c.user || "" },
      cell("id", c.id, "mono"), cell("user", c.user || "–"), cell("transport", c.transport),
      cell("remote", c.remote, "mono"), cell("vhost", c.vhost || "–"),
      el("td", { "data-col": "since", title: c.since || "" }, fmtTime(c.since)),
      subscriptionsCell(c.subscriptions),
      numCell("frames_in", c.frames_in), numCell("frames_out", c.frames_out),
      numCell("bytes_in", c.bytes_in, fmtBytes), numCell("bytes_out", c.bytes_out, fmtBytes),
      numCell("outbox_bytes", c.outbox_bytes, fmtBytes), numCell("unacked", c.unacked),
      cell("blocked", c.blocked || "", c.blocked ? "warn" : ""),
      el("td", { class: "actions" }, close));
  }

  const isQueueLike = (d) => d.kind === "queue" || d.kind === "dlq";

  function destinationRow(d, table) {
    const target = { vhost: d.vhost, destination: d.name };
    const label = `${d.name} (vhost ${d.vhost})`;
    const actions = el("td", { class: "actions" });
    const button = (testid, text, onclick, cls) =>
      actions.append(el("button", { type: "button", "data-testid": testid, class: cls, onclick }, text));
    if (d.kind !== "topic") button("peek", "peek", () => peek.open(d.vhost, d.name));
    if (d.kind === "dlq") {
      button("move-dlq", "move back", () => act(`Move the messages of ${label} back to their destinations`, false,
        () => api("/api/queues/move-dlq", { ...target, max: 0 }), () => table.load()));
    }
    if (isQueueLike(d)) {
      button("purge", "purge", () => act(`Purge the ready messages of ${label}`, false,
        () => api("/api/queues/purge", target), () => table.load()), "danger");
      button("delete", "delete", () => act(`Delete ${label} and its messages`, false,
        () => api("/api/queues/delete", target), () => table.load()), "danger");
    }
    return el("tr", { "data-testid": "destination-row", "data-name": d.name, "data-vhost": d.vhost, "data-kind": d.kind },
      cell("name", d.name, "mono"), cell("vhost", d.vhost), cell("kind", d.kind),
      numCell("messages", d.messages), numCell("bytes", d.bytes, fmtBytes), numCell("unacked", d.unacked),
      numCell("consumers", d.consumers), numCell("oldest_age_seconds", d.oldest_age_seconds, (v) => (d.messages > 0 ? fmtDuration(v) : "–")),
      numCell("in_rate", d.in_rate, fmtRate), numCell("out_rate", d.out_rate, fmtRate), actions);
  }

  // ---- peek ----------------------------------------------------------------

  const peek = {
    target: null,
    open(vhost, name) {
      this.target = { vhost, name };
      $("#peek").hidden = false;
      $("[data-testid=peek-destination]").textContent = `${name} (vhost ${vhost})`;
      this.load();
    },
    close() {
      this.target = null;
      $("#peek").hidden = true;
    },
    async load() {
      if (!this.target) return;
      const { vhost, name } = this.target;
      const p = new URLSearchParams({ vhost, destination: name, limit: PEEK_LIMIT, preview: PEEK_PREVIEW });
      const list = $("[data-testid=peek-list]");
      const errBox = $("[data-testid=peek-error]");
      try {
        const res = await api(`/api/queues/peek?${p}`);
        errBox.textContent = "";
        const items = res.items || [];
        list.replaceChildren(...items.map(peekItem));
        if (items.length === 0) list.replaceChildren(el("li", { class: "hint" }, "no messages"));
      } catch (err) {
        errBox.textContent = err.message;
        list.replaceChildren();
      }
    },
  };

  function peekItem(m) {
    const flags = [`${fmtInt(m.body_size)} bytes`, m.persistent ? "persistent" : "transient",
      `${m.deliveries} deliveries`, m.unacked ? "unacked" : "ready", `enqueued ${fmtTime(m.enqueued)}`];
    const headers = el("table", { class: "headers" });
    for (const [k, v] of m.headers || []) headers.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
    const more = m.body_size > (m.body_encoding === "base64" ? atobLength(m.body) : new Blob([m.body || ""]).size);
    return el("li", { "data-testid": "peek-message", "data-id": m.id },
      el("div", { class: "mono" }, m.id), el("div", { class: "hint" }, flags.join(" · ")), headers,
      el("pre", { "data-testid": "peek-body", "data-encoding": m.body_encoding },
        (m.body_encoding === "base64" ? "(base64) " : "") + (m.body || "") + (more ? " …" : "")));
  }

  function atobLength(b64) {
    const s = (b64 || "").replace(/=+$/, "");
    return Math.floor((s.length * 3) / 4);
  }

  // ---- tabs and start ----------------------------------------------------

  let active = "overview";
  const tables = {};

  function showTab(name) {
    active = name;
    for (const b of $$("[data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of $$("section.panel")) s.hidden = s.id !== name;
    if (history.replaceState) history.replaceState(null, "", `#${name}`);
    if (tables[name]) tables[name].load();
    if (name === "overview") window.dispatchEvent(new Event("resize"));
  }

  function start() {
    setupCharts();
    tables.connections = new Table("connections", "/api/connections", connectionRow);
    const kind = $("[data-testid=destinations-kind]");
    tables.destinations = new Table("destinations", "/api/destinations", destinationRow, () => ({ kind: kind.value }));
    kind.addEventListener("change", () => {
      tables.destinations.state.offset = 0;
      tables.destinations.load();
    });
    $("[data-testid=peek-close]").addEventListener("click", () => peek.close());
    $("[data-testid=peek-refresh]").addEventListener("click", () => peek.load());
    for (const b of $$("[data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
    const initial = location.hash.slice(1);
    showTab(["overview", "connections", "destinations"].includes(initial) ? initial : "overview");

    api("/api/overview").then(showOverview, (err) => toast(`overview: ${err.message}`, false));
    openStream();
    // Only the table in view is refreshed, and not while a dialog is open
    // (the row the dialog is about stays where the user saw it).
    setInterval(() => {
      if (document.hidden || $("#confirm").open) return;
      if (tables[active]) tables[active].load();
    }, REFRESH_MS);
  }

  start();
})();
