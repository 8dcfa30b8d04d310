// loggate's live-tail page: plain JavaScript, no dependencies, no build step.
//
// The tail is read with fetch() and parsed as Server-Sent Events by hand
// (rather than EventSource) so that it can send the bearer token in a header
// and decide for itself when and how to reconnect: always with the resume
// token of the last record received as Last-Event-ID, so a reconnect (after
// a network error or a gateway restart) loses and repeats nothing.
//
// Every value from a record reaches the page through textContent, never as
// HTML: a message that looks like markup is shown as the characters it is.
"use strict";

(() => {
  /** Height of one row in pixels; the same as --row in app.css. */
  const ROW = 22;
  /** Rows kept in the list; older ones are dropped (and counted). */
  const MAX_ROWS = 100000;
  /** Rows drawn beyond the visible ones, above and below. */
  const OVERSCAN = 8;
  /** No byte for this long (heartbeats come every 15 s) means a dead connection. */
  const SILENCE_MS = 45000;
  const STATS_EVERY_MS = 2000;
  /** Records/s above which the list is drawn every BUSY_DRAW_MS only. */
  const BUSY_RATE = 500;
  const BUSY_DRAW_MS = 50;
  const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
  const TOKEN_KEY = "loggate.token";

  const $ = (id) => document.getElementById(id);

  const state = {
    /** Shown records, oldest first: { rec, token }. */
    records: [],
    /** Records that arrived while paused, shown on resume. */
    pending: [],
    paused: false,
    /** Records dropped from the front of the list (MAX_ROWS). */
    trimmed: 0,
    /** The resume token of the newest record received. */
    lastToken: "",
    /**
     * A live tail's start by the gateway's clock (its Date header, less a
     * second for the header's resolution): where a reconnect before any
     * record resumes, so nothing that arrived meanwhile is missed.
     */
    liveSince: "",
    selected: null,
    /** Bumped whenever the filters change: older tails stop. */
    generation: 0,
    abort: null,
    /** Follow the newest record (the list is scrolled to the bottom). */
    stick: true,
    drawQueued: false,
    /** Row elements in the DOM, reused as the list scrolls. */
    pool: [],
    /** The chart is fetching /api/stats. */
    polling: false,
    /** Records that arrived since the last draw, and their rate before it. */
    arrived: 0,
    rate: 0,
    /** When the list was last drawn (performance.now()). */
    drewAt: 0,
    /** The spacer's height, and the list's visible height (0: to be read). */
    height: 0,
    viewHeight: 0,
  };

  // ---- authentication -------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    return headers;
  }

  /** Asks for a token; `start` runs again once one is given. */
  function askToken(message) {
    setConn("signed out");
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
    $("token").value = "";
    if (!$("login").open) $("login").showModal();
    $("token").focus();
  }

  async function start() {
    let session;
    try {
      const res = await fetch("/api/session", { headers: authHeaders(), cache: "no-store" });
      const body = await res.json().catch(() => ({}));
      if (res.status === 401) {
        // With no token yet, just ask; a token that was refused says why.
        const refused = token() ? body.error : "";
        sessionStorage.removeItem(TOKEN_KEY);
        askToken(refused);
        return;
      }
      if (!res.ok) throw new Error(body.error || res.statusText);
      session = body;
    } catch (e) {
      setConn("failed", e.message);
      setTimeout(start, 3000);
      return;
    }
    const who = $("who");
    who.textContent = session.auth ? "as " + session.principal : "no authentication";
    who.title = session.tail_everything
      ? "may read every service"
      : "may read: " + session.tail.join(", ");
    $("sign-out").hidden = !session.auth;
    const note = $("chart-note");
    note.hidden = session.tail_everything;
    note.textContent = session.tail_everything
      ? ""
      : "The rates count every service; this token may read only " +
        session.tail.join(", ") +
        ", so the chart is not shown.";
    restart();
    if (session.tail_everything && !state.polling) {
      state.polling = true;
      pollStats();
    }
  }

  // ---- the tail ---------------------------------------------------------

  /** The query string for the filters in the form. */
  function query() {
    const params = new URLSearchParams();
    // Reopening a live tail that has received nothing yet: from its start.
    if (!state.lastToken && state.liveSince && !$("f-start").value.trim()) {
      params.set("start_time", state.liveSince);
    }
    for (const service of $("f-service").value.split(/[\s,]+/)) {
      if (service) params.append("service", service);
    }
    const fields = [
      ["level", "f-level"],
      ["node", "f-node"],
      ["contains", "f-contains"],
      ["trace_id", "f-trace"],
      ["since", "f-start"],
    ];
    for (const [name, id] of fields) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    return params.toString();
  }

  /** Starts a new tail for the current filters, from an empty list. */
  function restart() {
    state.generation += 1;
    if (state.abort) state.abort.abort();
    state.records = [];
    state.pending = [];
    state.trimmed = 0;
    state.lastToken = "";
    state.liveSince = "";
    state.selected = null;
    state.stick = true;
    showDetails(null);
    notice("");
    for (const row of state.pool) {
      row.item = null;
      row.at = -1;
    }
    queueDraw();
    follow(state.generation);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Keeps one tail open for `generation`, reconnecting after any failure. */
  async function follow(generation) {
    let attempt = 0;
    let why = "";
    while (generation === state.generation) {
      const abort = new AbortController();
      state.abort = abort;
      setConn(attempt ? "reconnecting" : "connecting", why);
      let stop = false;
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (state.lastToken) headers["Last-Event-ID"] = state.lastToken;
        const res = await fetch("/api/tail?" + query(), {
          headers,
          signal: abort.signal,
          cache: "no-store",
        });
        if (!res.ok) {
          const body = await res.json().catch(() => ({ error: res.statusText }));
          if (res.status === 401) {
            sessionStorage.removeItem(TOKEN_KEY);
            askToken(body.error);
            return;
          }
          if (res.status === 400 || res.status === 403) {
            setConn("failed", body.error);
            notice(body.error, "error");
            return;
          }
          throw new Error(body.error || res.status + " " + res.statusText);
        }
        if (!state.liveSince) {
          const date = Date.parse(res.headers.get("date") || "");
          if (!Number.isNaN(date)) state.liveSince = new Date(date - 1000).toISOString();
        }
        setConn("live");
        attempt = 0;
        stop = await read(res.body, generation, abort);
        why = "the stream ended";
      } catch (e) {
        why = e.name === "AbortError" ? "no heartbeat" : e.message;
      }
      if (stop || generation !== state.generation) return;
      attempt += 1;
      setConn("reconnecting", why);
      await sleep(Math.min(10000, 250 * 2 ** Math.min(attempt, 6)));
    }
  }

  /**
   * Reads one event stream until it ends. Returns true when the tail must
   * not be reopened (the gateway refused it for good).
   */
  async function read(body, generation, abort) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let silence = setTimeout(() => abort.abort(), SILENCE_MS);
    let buffer = "";
    let event = { id: null, name: "", data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || generation !== state.generation) return false;
        clearTimeout(silence);
        silence = setTimeout(() => abort.abort(), SILENCE_MS);
        buffer += value;
        let from = 0;
        for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n", from)) {
          let line = buffer.slice(from, end);
          from = end + 1;
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {
            if (event.data.length && dispatch(event)) return true;
            event = { id: null, name: "", data: [] };
            continue;
          }
          if (line[0] === ":") continue; // a comment: a heartbeat
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value[0] === " ") value = value.slice(1);
          if (field === "id") event.id = value;
          else if (field === "event") event.name = value;
          else if (field === "data") event.data.push(value);
        }
        buffer = buffer.slice(from);
      }
    } finally {
      clearTimeout(silence);
      reader.cancel().catch(() => {});
    }
  }

  /** Handles one event; true when the tail must stop. */
  function dispatch(event) {
    const data = event.data.join("\n");
    switch (event.name) {
      case "": {
        const rec = JSON.parse(data);
        state.lastToken = event.id || state.lastToken;
        add({ rec, token: event.id || "" });
        return false;
      }
      case "caught_up":
        setConn("live", "caught up with the history");
        return false;
      case "gap":
        notice("Gap: " + JSON.parse(data).reason, "error");
        return false;
      case "failed": {
        const failure = JSON.parse(data);
        if (failure.code === "UNAUTHENTICATED") {
          sessionStorage.removeItem(TOKEN_KEY);
          askToken(failure.message);
          return true;
        }
        if (failure.code === "PERMISSION_DENIED" || failure.code === "INVALID_ARGUMENT") {
          setConn("failed", failure.message);
          return true;
        }
        // UNAVAILABLE (a restart, the broker away): reconnect and resume.
        throw new Error(failure.message);
      }
      default:
        return false;
    }
  }

  function add(item) {
    // For the latency measurement (tests/browser/measure.mjs) only.
    if (window.__loggateArrived) {
      window.__loggateArrived.set(item.rec.id, performance.timeOrigin + performance.now());
    }
    if (state.paused) {
      state.pending.push(item);
      // Bounded like the list: what would be trimmed on resume anyway goes
      // now, counted.
      const over = state.pending.length - MAX_ROWS;
      if (over > 0) {
        const drop = over + 1000;
        state.pending.splice(0, drop);
        state.trimmed += drop;
      }
    } else {
      state.records.push(item);
      trim();
    }
    queueRecordsDraw();
  }

  function trim() {
    // In steps, so that the copy is rare.
    const over = state.records.length - MAX_ROWS;
    if (over > 0) {
      const drop = over + 1000;
      state.records.splice(0, drop);
      state.trimmed += drop;
    }
  }

  function togglePause() {
    state.paused = !state.paused;
    if (!state.paused) {
      for (const item of state.pending) state.records.push(item);
      state.pending = [];
      trim();
      state.stick = true;
    }
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    queueDraw();
  }

  // ---- the list ---------------------------------------------------------

  function queueDraw() {
    if (!state.drawQueued) {
      state.drawQueued = true;
      requestAnimationFrame(draw);
    }
  }

  /**
   * A draw for records that arrived. When they come faster than anyone can
   * read (500/s: a screenful of new rows every few frames), the list is redrawn at most
   * every BUSY_DRAW_MS: each draw then replaces the whole screen anyway, and
   * drawing it 60 times a second would only keep the browser from
   * answering clicks and keys. At ordinary rates, every frame.
   */
  function queueRecordsDraw() {
    state.arrived += 1;
    if (state.drawQueued) return;
    const wait = BUSY_DRAW_MS - (performance.now() - state.drewAt);
    if (state.rate < BUSY_RATE || wait <= 0) {
      queueDraw();
      return;
    }
    state.drawQueued = true;
    setTimeout(() => requestAnimationFrame(draw), wait);
  }

  /**
   * Draws the visible rows only: the DOM holds a screenful, not the list.
   * Record i always goes to row element i mod (pool size), so when a record
   * arrives at the bottom only the row it takes is refilled; the others
   * keep their text and at most move.
   */
  function draw() {
    state.drawQueued = false;
    const now = performance.now();
    // By rate, not by count: a frame late because the machine was busy
    // brings many records at once, but is no reason to draw less often.
    state.rate = (state.arrived * 1000) / Math.max(1, now - state.drewAt);
    state.drewAt = now;
    state.arrived = 0;
    const list = $("list");
    const total = state.records.length;
    if (state.height !== total * ROW) {
      state.height = total * ROW;
      $("spacer").style.height = state.height + "px";
    }
    // Computed rather than read back after the spacer changed, so a frame
    // lays the page out once (in the browser's own step), not twice.
    const view = state.viewHeight || (state.viewHeight = list.clientHeight);
    let top;
    if (state.stick) {
      top = Math.max(0, state.height - view);
      list.scrollTop = top;
    } else {
      top = list.scrollTop;
    }
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + view) / ROW) + OVERSCAN);
    const pool = state.pool;
    if (pool.length < last - first) {
      // Grown (a taller window): every row is placed afresh.
      while (pool.length < last - first + OVERSCAN) {
        const row = newRow();
        list.appendChild(row);
        pool.push(row);
      }
      for (const row of pool) row.at = -1;
    }
    const size = pool.length;
    for (let k = 0; k < size; k += 1) {
      const row = pool[k];
      // The index in [first, last) that this row holds, if any.
      const i = first + ((k - (first % size) + size) % size);
      if (i >= last) {
        if (!row.hidden) row.hidden = true;
        continue;
      }
      if (row.hidden) row.hidden = false;
      if (row.at !== i) {
        row.at = i;
        row.dataset.index = String(i);
        row.style.transform = "translateY(" + i * ROW + "px)";
      }
      const item = state.records[i];
      if (row.item !== item) fill(row, item);
      const selected = item === state.selected;
      if (row.selected !== selected) {
        row.selected = selected;
        row.classList.toggle("selected", selected);
      }
    }
    counts();
  }

  function newRow() {
    const row = document.createElement("div");
    row.className = "row";
    for (const part of ["time", "level", "service", "node", "trace", "message"]) {
      const span = document.createElement("span");
      span.className = part;
      row.appendChild(span);
    }
    return row;
  }

  /** Puts a record's fields into a row, as text only. */
  function fill(row, item) {
    row.item = item;
    const rec = item.rec;
    const [time, level, service, node, trace, message] = row.children;
    time.textContent = clock(rec.time);
    time.title = rec.time;
    const lv = LEVELS.includes(rec.level) ? rec.level : "info";
    level.textContent = rec.level;
    level.className = "level lv-" + lv;
    service.textContent = rec.service;
    node.textContent = rec.node || "";
    trace.textContent = rec.trace_id ? rec.trace_id.slice(0, 8) : "";
    trace.title = rec.trace_id ? "show only trace " + rec.trace_id : "";
    message.textContent = rec.message;
    // For the latency measurement (tests/browser/measure.mjs) only.
    if (window.__loggateShown && !window.__loggateShown.has(rec.id)) {
      window.__loggateShown.set(rec.id, performance.timeOrigin + performance.now());
    }
  }

  /** HH:MM:SS.mmm of an RFC 3339 time (UTC, as the gateway writes it). */
  function clock(rfc3339) {
    return typeof rfc3339 === "string" ? rfc3339.slice(11, 23) : "";
  }

  /** Sets an element's text only when it changed (no needless layout). */
  function text(id, value) {
    const element = $(id);
    if (element.textContent !== value) element.textContent = value;
  }

  function counts() {
    const n = state.records.length;
    text("count", n.toLocaleString() + (n === 1 ? " record" : " records"));
    $("pending").hidden = !state.paused;
    if (state.paused) {
      text("pending", "paused: " + state.pending.length.toLocaleString() + " new, shown on resume");
    }
    $("trimmed").hidden = state.trimmed === 0;
    if (state.trimmed) {
      text(
        "trimmed",
        state.trimmed.toLocaleString() +
          " older dropped from view (keeps " +
          MAX_ROWS.toLocaleString() +
          ")",
      );
    }
    $("jump").hidden = state.stick;
  }

  function onScroll() {
    const list = $("list");
    state.stick = list.scrollTop + list.clientHeight >= list.scrollHeight - ROW / 2;
    queueDraw();
  }

  function onListClick(e) {
    const row = e.target.closest(".row");
    if (!row || !row.item) return;
    if (e.target.classList.contains("trace") && row.item.rec.trace_id) {
      filterByTrace(row.item.rec.trace_id);
      return;
    }
    state.selected = row.item;
    showDetails(row.item);
    queueDraw();
  }

  function filterByTrace(traceId) {
    $("f-trace").value = traceId;
    restart();
  }

  // ---- details ----------------------------------------------------------

  const FIELDS = [
    "id",
    "time",
    "received_time",
    "service",
    "node",
    "level",
    "message",
    "trace_id",
    "span_id",
    "gateway",
    "principal",
  ];

  function showDetails(item) {
    const box = $("details");
    box.hidden = !item;
    if (!item) return;
    const fields = $("fields");
    fields.replaceChildren();
    for (const name of FIELDS) {
      const value = item.rec[name];
      if (value === undefined || value === "") continue;
      let shown = document.createTextNode(String(value));
      if (name === "trace_id") {
        shown = document.createElement("button");
        shown.type = "button";
        shown.textContent = value;
        shown.title = "show only this trace";
        shown.addEventListener("click", () => filterByTrace(value));
      }
      pair(fields, name, shown);
    }
    const attributes = $("attributes");
    attributes.replaceChildren();
    const entries = Object.entries(item.rec.attributes || {});
    if (!entries.length) pair(attributes, "", document.createTextNode("none"));
    for (const [k, v] of entries) pair(attributes, k, document.createTextNode(v));
  }

  function pair(list, name, node) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.appendChild(node);
    list.append(dt, dd);
  }

  // ---- the chart --------------------------------------------------------

  async function pollStats() {
    for (;;) {
      if (!document.hidden) {
        try {
          const res = await fetch("/api/stats?seconds=300", {
            headers: authHeaders(),
            cache: "no-store",
          });
          const body = await res.json();
          if (res.ok) chart(body);
          else {
            $("chart-note").hidden = false;
            $("chart-note").textContent = body.error;
            if (res.status === 401 || res.status === 403) return;
          }
        } catch (e) {
          // The gateway is away; the tail says so. Try again later.
        }
      }
      await sleep(STATS_EVERY_MS);
    }
  }

  /** Draws one line per level: x is time (oldest left), y records/s. */
  function chart(stats) {
    const svg = $("chart");
    const counts = stats.counts;
    const n = counts.length;
    let peak = 1;
    for (const second of counts) for (const c of second) peak = Math.max(peak, c);
    svg.replaceChildren();
    const legend = $("legend");
    legend.replaceChildren();
    stats.levels.forEach((level, l) => {
      if (!LEVELS.includes(level)) return;
      const total = counts.reduce((sum, second) => sum + second[l], 0);
      const now = n ? counts[n - 1][l] : 0;
      const key = document.createElement("span");
      key.className = "lv-" + level;
      key.textContent = level + " " + now + "/s";
      legend.appendChild(key);
      if (!total) return;
      let d = "";
      counts.forEach((second, i) => {
        const x = n > 1 ? (i * 300) / (n - 1) : 0;
        const y = 78 - (second[l] / peak) * 74;
        d += (i ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
      });
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d);
      path.setAttribute("class", "st-" + level);
      svg.appendChild(path);
    });
    const peakNote = document.createElement("span");
    peakNote.className = "note";
    peakNote.textContent = "peak " + peak + "/s";
    legend.appendChild(peakNote);
  }

  // ---- the rest of the page ----------------------------------------------

  function setConn(what, why) {
    const conn = $("conn");
    conn.dataset.state = what.split(" ")[0];
    conn.textContent = why ? what + ": " + why : what;
  }

  function notice(text, kind) {
    const box = $("notice");
    box.hidden = !text;
    box.textContent = text || "";
    box.dataset.kind = kind || "";
  }

  async function copy(text, button) {
    if (!text) {
      notice("No record yet: nothing to resume after.");
      return;
    }
    try {
      await navigator.clipboard.writeText(text);
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = label), 1200);
    } catch (e) {
      // No clipboard outside a secure context: show it to copy by hand.
      notice("Resume token: " + text);
    }
  }

  function isTyping(target) {
    return (
      target instanceof HTMLInputElement ||
      target instanceof HTMLSelectElement ||
      target instanceof HTMLTextAreaElement ||
      target instanceof HTMLButtonElement
    );
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/" && !isTyping(e.target)) {
      e.preventDefault();
      $("f-service").focus();
    } else if (e.key === " " && !isTyping(e.target)) {
      e.preventDefault();
      togglePause();
    } else if (e.key === "Escape") {
      state.selected = null;
      showDetails(null);
      queueDraw();
    }
  }

  function init() {
    $("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      restart();
    });
    for (const id of ["f-level", "f-start"]) $(id).addEventListener("change", restart);
    $("clear-filters").addEventListener("click", () => {
      $("filters").reset();
      restart();
    });
    $("pause").addEventListener("click", togglePause);
    $("copy-token").addEventListener("click", (e) => copy(state.lastToken, e.currentTarget));
    $("copy-record-token").addEventListener("click", (e) =>
      copy(state.selected ? state.selected.token : "", e.currentTarget),
    );
    $("close-details").addEventListener("click", () => {
      state.selected = null;
      showDetails(null);
      queueDraw();
    });
    $("jump").addEventListener("click", () => {
      state.stick = true;
      queueDraw();
    });
    $("list").addEventListener("scroll", onScroll, { passive: true });
    $("list").addEventListener("click", onListClick);
    window.addEventListener("resize", () => {
      state.viewHeight = 0;
      queueDraw();
    });
    document.addEventListener("keydown", onKey);
    $("login-form").addEventListener("submit", () => {
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      start();
    });
    $("sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    });
    start();
  }

  init();
})();
