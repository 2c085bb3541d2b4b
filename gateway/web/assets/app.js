// aimusicstore live charts: reads the public JSON API and the live feed
// (Server-Sent Events on /api/v1/events). No framework, no third-party code.
"use strict";

(() => {
  const API = "/api/v1";
  const TREND_LIMIT = 10;
  const CHART_LIMIT = 25;
  const TICKER_MAX = 40;
  const PERIOD_NAMES = { daily: "Daily", weekly: "Weekly", monthly: "Monthly", all_time: "All-time" };
  const SORT_NAMES = { score: "by score", best: "best rated", controversial: "most controversial" };
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const state = {
    genre: "", platform: "", category: "",
    period: "daily", sort: "score", item_type: "song", trend: "songs",
  };
  const titles = new Map(); // "song:id" -> {title, artist}
  let openItem = null; // {item_type, item_id} shown in the dialog

  // -- small helpers -------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  function key(itemType, itemId) { return `${itemType}:${itemId}`; }

  function fmt(n) {
    if (typeof n !== "number") return String(n ?? "");
    return Number.isInteger(n) ? n.toLocaleString("en") : n.toLocaleString("en", { maximumFractionDigits: 2 });
  }

  async function getJSON(path, params) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== undefined && v !== null) url.searchParams.set(k, v);
    const reply = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try { body = await reply.json(); } catch (_) { body = null; }
    if (!reply.ok) {
      const err = new Error((body && body.message) || `${reply.status} ${reply.statusText}`);
      err.status = reply.status;
      throw err;
    }
    return body;
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = !message;
  }

  function debounce(fn, ms) {
    let timer = 0;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  function flash(el) {
    el.classList.remove("flash");
    void el.offsetWidth; // restart the animation
    el.classList.add("flash");
  }

  // -- URL state: a chart view can be shared as a link -------------------------------

  function readUrl() {
    const q = new URLSearchParams(location.search);
    for (const name of ["genre", "platform", "category"]) state[name] = q.get(name) || "";
    if (PERIOD_NAMES[q.get("period")]) state.period = q.get("period");
    if (SORT_NAMES[q.get("sort")]) state.sort = q.get("sort");
    if (["song", "tool"].includes(q.get("item_type"))) state.item_type = q.get("item_type");
  }

  function writeUrl() {
    const q = new URLSearchParams();
    for (const name of ["genre", "platform", "category"]) if (state[name]) q.set(name, state[name]);
    if (state.period !== "daily") q.set("period", state.period);
    if (state.sort !== "score") q.set("sort", state.sort);
    if (state.item_type !== "song") q.set("item_type", state.item_type);
    const search = q.toString();
    history.replaceState(null, "", search ? `?${search}` : location.pathname);
  }

  // -- movement, titles ------------------------------------------------------------

  function movement(entry) {
    const prev = entry.previous_rank;
    switch (entry.movement) {
      case "new":
        return h("span", { class: "badge new", title: "New on this chart" }, "NEW");
      case "up":
        return h("span", { class: "mv up", title: `Up from #${prev}` },
          h("span", { "aria-hidden": "true" }, "▲"), prev ? ` ${prev - entry.rank}` : "",
          h("span", { class: "visually-hidden" }, ` up from ${prev}`));
      case "down":
        return h("span", { class: "mv down", title: `Down from #${prev}` },
          h("span", { "aria-hidden": "true" }, "▼"), prev ? ` ${entry.rank - prev}` : "",
          h("span", { class: "visually-hidden" }, ` down from ${prev}`));
      default:
        return h("span", { class: "mv same", title: "Same place" },
          h("span", { "aria-hidden": "true" }, "–"), h("span", { class: "visually-hidden" }, "no change"));
    }
  }

  function itemButton(entry) {
    titles.set(key(entry.item_type, entry.item_id), { title: entry.title, artist: entry.artist });
    return h("button", {
      type: "button", class: "item-link", "data-item-type": entry.item_type, "data-item-id": entry.item_id,
      onclick: () => openDetails(entry.item_type, entry.item_id),
    }, entry.title || entry.item_id);
  }

  // -- trending --------------------------------------------------------------------

  let lastTrending = null;

  async function loadTrending() {
    const body = await getJSON(`${API}/trending`, {
      limit: TREND_LIMIT, genre: state.genre, platform: state.platform, category: state.category,
    });
    lastTrending = body;
    renderTrending();
  }

  function renderTrending() {
    if (!lastTrending) return;
    const entries = lastTrending[state.trend] || [];
    const list = $("trending-list");
    list.setAttribute("aria-label", state.trend === "songs" ? "Trending songs" : "Trending tools");
    list.replaceChildren(...entries.map((e) => h("li", { "data-key": key(e.item_type, e.item_id) },
      h("span", { class: "rank" }, e.rank),
      h("span", {}, movement(e)),
      h("div", { class: "title-cell" }, itemButton(e), e.artist ? h("div", { class: "artist" }, e.artist) : null),
      h("div", { class: "score" }, h("b", { "data-field": "score" }, fmt(e.score)),
        h("span", { title: "Trending score: recent votes count more" }, `trend ${fmt(e.trending_score)}`)),
    )));
    $("trending-empty").hidden = entries.length > 0;
  }

  // -- charts ------------------------------------------------------------------------

  let chartSeq = 0;

  async function loadChart() {
    const seq = ++chartSeq;
    const params = { item_type: state.item_type, sort: state.sort, limit: CHART_LIMIT };
    if (state.item_type === "song") Object.assign(params, { genre: state.genre, platform: state.platform });
    const body = await getJSON(`${API}/top/${state.period}`, params);
    if (seq !== chartSeq) return; // a newer choice is on its way
    const table = $("chart-table");
    table.dataset.period = body.period;
    table.dataset.sort = state.sort;
    table.dataset.itemType = body.item_type;
    const kind = body.item_type === "tool" ? "tools" : "songs";
    $("chart-caption").textContent =
      `${PERIOD_NAMES[body.period]} chart of ${kind}, ${SORT_NAMES[state.sort]} · ${body.date}` +
      (state.item_type === "song" && (state.genre || state.platform)
        ? ` · ${[state.genre, state.platform].filter(Boolean).join(", ")}` : "");
    $("chart-updated").textContent = body.updated_at ? `updated ${new Date(body.updated_at).toLocaleTimeString()}` : "";
    $("chart-body").replaceChildren(...body.entries.map((e) => h("tr", { "data-key": key(e.item_type, e.item_id) },
      h("td", { class: "num rank" }, e.rank),
      h("td", {}, movement(e)),
      h("td", { class: "title-cell" }, itemButton(e), e.artist ? h("div", { class: "artist" }, e.artist) : null,
        h("div", { class: "narrow-only artist" }, `peak #${e.peak_rank || "–"} · ${fmt(e.days_on_chart)} d`)),
      h("td", { class: "num", title: `Weighted score ${fmt(e.weighted_score)} (raw ${fmt(e.score)})` },
        h("b", { "data-field": "weighted" }, fmt(e.weighted_score))),
      h("td", { class: "num wide" },
        h("span", { class: "votes-up", "data-field": "up" }, `▲${fmt(e.up_votes)}`), " ",
        h("span", { class: "votes-down", "data-field": "down" }, `▼${fmt(e.down_votes)}`)),
      h("td", { class: "num wide", title: "Best daily rank" }, e.peak_rank ? `#${e.peak_rank}` : "–"),
      h("td", { class: "num wide", title: "Days on the daily chart" }, fmt(e.days_on_chart)),
    )));
    $("chart-empty").hidden = body.entries.length > 0;
  }

  // -- leaderboard -------------------------------------------------------------------

  async function loadLeaderboard() {
    const body = await getJSON(`${API}/leaderboard`, { page_size: 10 });
    const agents = body.agents || [];
    $("leaderboard-list").replaceChildren(...agents.map((a, i) => h("li", {},
      h("span", { class: "pos" }, i + 1),
      h("span", { class: "name", title: a.id }, a.name || a.id,
        h("span", { class: "standing" }, `${a.standing || "agent"} · ${fmt(a.vote_count)} votes`)),
      h("span", { class: "rep", title: `${fmt(a.vote_count)} votes` }, fmt(a.reputation_score)),
    )));
    $("leaderboard-empty").hidden = agents.length > 0;
  }

  // -- filter suggestions ------------------------------------------------------------

  async function loadSuggestions() {
    const [songs, tools] = await Promise.all([
      getJSON(`${API}/songs`, { page_size: 100 }).catch(() => ({ songs: [] })),
      getJSON(`${API}/tools`, { page_size: 100 }).catch(() => ({ tools: [] })),
    ]);
    const fill = (id, values) => $(id).replaceChildren(
      ...[...new Set(values.filter(Boolean))].sort().slice(0, 50).map((v) => h("option", { value: v })));
    fill("genres", (songs.songs || []).map((s) => s.genre));
    fill("platforms", (songs.songs || []).map((s) => s.platform));
    fill("categories", (tools.tools || []).map((t) => t.category));
  }

  // -- refreshes ---------------------------------------------------------------------

  async function refresh(what) {
    try {
      await Promise.all(what.map((load) => load()));
      showError("");
    } catch (err) {
      showError(`Could not load the charts: ${err.message}`);
    }
  }

  // Votes arrive by the dozen: the charts are re-read once they settle
  // (trending and charts are fresh within 2 s; their answers are cached 1 s).
  const refreshSoon = debounce(() => refresh([loadTrending, loadChart]), 600);
  const refreshSettled = debounce(() => refresh([loadTrending, loadChart]), 2500);
  const refreshAfterVotes = () => { refreshSoon(); refreshSettled(); };
  let leaderboardAt = 0;

  // -- the item dialog -----------------------------------------------------------------

  async function openDetails(itemType, itemId) {
    openItem = { item_type: itemType, item_id: itemId };
    const dialog = $("item");
    dialog.dataset.itemId = itemId;
    const known = titles.get(key(itemType, itemId)) || {};
    $("item-kind").textContent = itemType === "tool" ? "Tool" : "Song";
    $("item-title").textContent = known.title || itemId;
    $("item-sub").textContent = known.artist || "";
    $("item-stats").replaceChildren();
    $("item-history").replaceChildren(h("p", { class: "muted" }, "Loading…"));
    $("item-reviews").replaceChildren();
    if (!dialog.open) dialog.showModal();
    await loadDetails();
  }

  async function loadDetails() {
    if (!openItem) return;
    const { item_type: itemType, item_id: itemId } = openItem;
    const collection = itemType === "tool" ? "tools" : "songs";
    const id = encodeURIComponent(itemId);
    try {
      const [item, history, reviews] = await Promise.all([
        getJSON(`${API}/${collection}/${id}`),
        getJSON(`${API}/${collection}/${id}/history`, { days: 30 }),
        getJSON(`${API}/votes/${itemType}/${id}/reviews`, { page_size: 5 }),
      ]);
      if (!openItem || openItem.item_id !== itemId) return;
      renderItem(itemType, item);
      renderHistory(history.points || []);
      renderReviews(reviews.votes || []);
    } catch (err) {
      $("item-history").replaceChildren(h("p", { class: "error" }, `Could not load this item: ${err.message}`));
    }
  }

  function renderItem(itemType, item) {
    $("item-title").textContent = item.title || item.name || item.id;
    const sub = itemType === "tool"
      ? [item.category, item.website].filter(Boolean).join(" · ")
      : [item.artist, item.platform, item.genre, item.mood, item.tempo ? `${item.tempo} BPM` : ""].filter(Boolean).join(" · ");
    $("item-sub").textContent = sub;
    const stats = [["Score", fmt(item.score)], ["Up votes", fmt(item.up_votes)], ["Down votes", fmt(item.down_votes)]];
    if (itemType === "tool") stats.push(["Rating", item.review_count ? `${fmt(item.rating)} / 5` : "–"], ["Reviews", fmt(item.review_count)]);
    $("item-stats").replaceChildren(...stats.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { "data-stat": k }, v))));
  }

  // The rank history as a line: rank 1 at the top, one point per day on the chart.
  function renderHistory(points) {
    const figure = $("item-history");
    const ranked = points.filter((p) => p.rank > 0);
    if (ranked.length === 0) {
      figure.replaceChildren(h("p", { class: "muted" }, "Not on a daily chart in the last 30 days yet."));
      return;
    }
    const W = 640, H = 220, L = 44, R = 16, T = 14, B = 34;
    const day = (d) => Date.parse(`${d}T00:00:00Z`) / 86400000;
    const first = day(ranked[0].date), last = day(ranked[ranked.length - 1].date);
    const span = Math.max(1, last - first);
    const worst = Math.max(5, ...ranked.map((p) => p.rank));
    const x = (d) => L + ((day(d) - first) / span) * (W - L - R) + (last === first ? (W - L - R) / 2 : 0);
    const y = (rank) => T + ((rank - 1) / (worst - 1)) * (H - T - B);
    const best = ranked.reduce((a, p) => (p.rank < a.rank ? p : a), ranked[0]);
    const label = `Daily rank over ${ranked.length} day${ranked.length > 1 ? "s" : ""}: from #${ranked[0].rank} on ${ranked[0].date} ` +
      `to #${ranked[ranked.length - 1].rank} on ${ranked[ranked.length - 1].date}; best #${best.rank} on ${best.date}.`;
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "history-plot" });
    // Rank grid lines and labels.
    const ticks = [...new Set([1, Math.ceil(worst / 2), worst])];
    for (const r of ticks) {
      plot.append(svg("line", { x1: L, x2: W - R, y1: y(r), y2: y(r), stroke: "#30363d", "stroke-width": 1 }));
      plot.append(svg("text", { x: L - 8, y: y(r) + 4, "text-anchor": "end", class: "axis" }, `#${r}`));
    }
    const dates = [...new Set([ranked[0].date, ranked[ranked.length - 1].date])];
    for (const d of dates) {
      plot.append(svg("text", { x: x(d), y: H - 10, "text-anchor": dates.length === 1 ? "middle" : d === dates[0] ? "start" : "end", class: "axis" }, d));
    }
    const path = ranked.map((p, i) => `${i ? "L" : "M"}${x(p.date).toFixed(1)},${y(p.rank).toFixed(1)}`).join(" ");
    plot.append(svg("path", { d: path, fill: "none", stroke: "#79c0ff", "stroke-width": 2.5, "stroke-linejoin": "round" }));
    for (const p of ranked) {
      const dot = svg("circle", { cx: x(p.date), cy: y(p.rank), r: 4.5, fill: p === best ? "#ffd33d" : "#79c0ff", stroke: "#0d1117", "stroke-width": 1.5 });
      dot.append(svg("title", {}, `${p.date}: #${p.rank}, score ${p.score} (▲${p.up_votes} ▼${p.down_votes})`));
      plot.append(dot);
    }
    figure.replaceChildren(plot, h("figcaption", {}, label));
  }

  function renderReviews(votes) {
    const list = $("item-reviews");
    if (votes.length === 0) {
      list.replaceChildren(h("li", { class: "muted" }, "No reviews yet."));
      return;
    }
    list.replaceChildren(...votes.map((v) => h("li", {},
      h("div", { class: "meta" },
        h("span", { class: v.vote === "up" ? "votes-up" : "votes-down" }, v.vote === "up" ? "▲ up" : "▼ down"),
        ` · ${v.agent_id}`, v.rating ? ` · ${"★".repeat(v.rating)}${"☆".repeat(5 - v.rating)}` : "",
        v.timestamp ? ` · ${new Date(v.timestamp).toLocaleString()}` : ""),
      v.comment ? h("p", {}, v.comment) : null,
    )));
  }

  // -- live feed -----------------------------------------------------------------------

  function setLive(stateName, text) {
    const el = $("live-status");
    el.dataset.state = stateName;
    el.querySelector(".text").textContent = text;
  }

  function onVote(ev) {
    const k = key(ev.item_type, ev.item_id);
    const known = titles.get(k);
    const dir = ev.type === "retract" ? "retract" : ev.vote;
    const time = ev.timestamp ? new Date(ev.timestamp) : new Date();
    const li = h("li", { class: "fresh", "data-item-id": ev.item_id, "data-event-id": ev.event_id },
      h("span", { class: `dir ${dir}`, "aria-hidden": "true" }, dir === "up" ? "▲" : dir === "down" ? "▼" : "↺"),
      h("div", { class: "what" },
        h("button", { type: "button", class: "item-link", onclick: () => openDetails(ev.item_type, ev.item_id) },
          (known && known.title) || ev.item_id),
        h("div", { class: "who" },
          `${ev.type === "retract" ? "vote retracted" : `voted ${ev.vote}`} by ${ev.agent_id} · score ${fmt(ev.score)}`)),
      h("time", { datetime: time.toISOString() }, time.toLocaleTimeString()),
    );
    const ticker = $("ticker");
    ticker.prepend(li);
    while (ticker.children.length > TICKER_MAX) ticker.lastElementChild.remove();
    $("ticker-empty").hidden = true;

    // The rows of this item follow at once; ranks follow on the next read.
    for (const row of document.querySelectorAll(`[data-key="${CSS.escape(k)}"]`)) {
      const up = row.querySelector('[data-field="up"]');
      const down = row.querySelector('[data-field="down"]');
      const score = row.querySelector('[data-field="score"]');
      if (up) up.textContent = `▲${fmt(ev.up_votes)}`;
      if (down) down.textContent = `▼${fmt(ev.down_votes)}`;
      if (score) score.textContent = fmt(ev.score);
      flash(row);
    }
    if (openItem && openItem.item_type === ev.item_type && openItem.item_id === ev.item_id) loadDetailsSoon();
    refreshAfterVotes();
    if (Date.now() - leaderboardAt > 15000) {
      leaderboardAt = Date.now();
      refresh([loadLeaderboard]);
    }
  }

  const loadDetailsSoon = debounce(loadDetails, 800);
  let source = null;

  function connect() {
    if (!("EventSource" in window)) {
      setLive("down", "Live updates need a newer browser");
      return;
    }
    source = new EventSource(`${API}/events`);
    source.onopen = () => setLive("live", "Live");
    source.onmessage = (msg) => {
      try { onVote(JSON.parse(msg.data)); } catch (err) { /* a malformed event is skipped */ }
    };
    source.addEventListener("stream-error", () => setLive("connecting", "Reconnecting…"));
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the feed is full, or the resume point is gone): start
        // afresh a little later, and re-read what may have been missed.
        setLive("down", "Live feed lost; retrying…");
        source.close();
        setTimeout(() => { connect(); refresh([loadTrending, loadChart]); }, 5000);
      } else {
        setLive("connecting", "Reconnecting…");
      }
    };
  }

  // -- wiring --------------------------------------------------------------------------

  function syncControls() {
    $("f-genre").value = state.genre;
    $("f-platform").value = state.platform;
    $("f-category").value = state.category;
    for (const name of ["period", "sort", "item_type"]) {
      const input = document.querySelector(`input[name="${name}"][value="${state[name]}"]`);
      if (input) input.checked = true;
    }
  }

  function init() {
    readUrl();
    syncControls();

    const onFilter = debounce(() => {
      const platform = $("f-platform");
      if (!platform.checkValidity()) return;
      state.genre = $("f-genre").value.trim();
      state.platform = platform.value.trim();
      state.category = $("f-category").value.trim();
      writeUrl();
      refresh([loadTrending, loadChart]);
    }, 350);
    $("filters").addEventListener("input", onFilter);
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("filters").addEventListener("reset", () => setTimeout(onFilter, 0));

    $("chart-controls").addEventListener("change", (e) => {
      if (e.target.name in state) {
        state[e.target.name] = e.target.value;
        writeUrl();
        refresh([loadChart]);
      }
    });

    for (const button of document.querySelectorAll("[data-trend]")) {
      button.addEventListener("click", () => {
        state.trend = button.dataset.trend;
        for (const b of document.querySelectorAll("[data-trend]")) b.setAttribute("aria-pressed", String(b === button));
        renderTrending();
      });
    }

    const dialog = $("item");
    $("item-close").addEventListener("click", () => dialog.close());
    dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
    dialog.addEventListener("close", () => { openItem = null; });

    refresh([loadTrending, loadChart, loadLeaderboard]);
    loadSuggestions();
    connect();
    // A slow heartbeat besides the live updates: dates roll over, agents graduate.
    setInterval(() => refresh([loadTrending, loadChart, loadLeaderboard]), 60000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
