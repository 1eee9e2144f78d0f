// One review: its state from the worker that owns its restaurant (refreshed every 2 s until
// the state is final), its state history, and its timeline on every topic (read back from
// the topics, once on load and once more when the state turns final). Ids and every value
// from the API are untrusted: they only ever go through textContent.
"use strict";

(() => {
  const { el, fmt } = RP;
  const INTERVAL_MS = 2000;  // light polling (seed 000 §5.2), as the other pages
  // A review just produced is not known to its owner until the stage takes it in (seconds):
  // 404s are asked again for this long, then the page stops and says so.
  const NOT_KNOWN_FOR_MS = 60000;
  const path = window.location.pathname.replace(/\/$/, "");
  const cut = path.lastIndexOf("/reviews/");
  const restaurantId = decodeURIComponent(path.slice("/restaurants/".length, cut));
  const reviewId = decodeURIComponent(path.slice(cut + "/reviews/".length));
  const restaurantPath = `/restaurants/${encodeURIComponent(restaurantId)}`;
  const api = `/api${restaurantPath}/reviews/${encodeURIComponent(reviewId)}`;
  document.getElementById("name").textContent = reviewId;
  document.getElementById("back").textContent = `← ${restaurantId}`;
  document.getElementById("back").setAttribute("href", restaurantPath);
  document.title = `ReviewPulse · review ${reviewId}`;
  const status = document.getElementById("status");

  // A state's pill; the review's own (in the heading) also says whether it is final.
  function badge(state, final) {
    return el("span", { class: `pill state ${state}`, "data-state": state,
      "data-final": final === undefined ? null : String(final) }, state === "UNKNOWN" ? "not known (yet)" : state);
  }

  function tile(label, value, hint, cls) {
    return el("div", { class: "tile" }, el("div", { class: "label" }, label),
      el("div", { class: `value ${cls || ""}` }, value), hint ? el("div", { class: "hint" }, hint) : null);
  }

  function labelText(label, provisional) {
    if (!label) return "—";
    return provisional ? `${label} (provisional)` : label;
  }

  function at(ms) { return `${new Date(ms).toISOString().replace("T", " ").replace("Z", "")} UTC`; }

  function renderState(s, worker) {
    document.getElementById("worker").textContent = `answered by ${worker || s.worker} · partition ${s.partition}`;
    document.getElementById("state").replaceChildren(badge(s.state, s.final));
    document.getElementById("subtitle").textContent = `${restaurantId} · event ${s.event_id}`
      + (s.trace_id ? ` · trace ${s.trace_id}` : "")
      + (s.final ? " · final" : " · in progress, refreshing every 2 s");
    document.getElementById("tiles").replaceChildren(
      tile("State", s.state, s.final ? "final" : "not final yet", s.state === "DEAD_LETTERED" ? "neg" : ""),
      tile("Label", labelText(s.label, s.provisional), s.score === null || s.score === undefined
        ? (s.provisional ? "the heuristic's, until the answer" : "") : `score ${fmt.score(s.score)}`),
      tile("Attempt", s.attempt, s.reason ? s.reason : ""),
      tile("Model", s.model || "—", s.prompt_version ? `prompt ${s.prompt_version}` : "no prompt version"),
      tile("Entered", fmt.time(s.entered_at_ms), `${at(s.entered_at_ms)}, ${fmt.ago(s.entered_at_ms)}`));
    const history = document.getElementById("history");
    history.replaceChildren(...s.history.map((h) => el("li", { "data-state": h.state },
      badge(h.state), " ", el("span", { class: "small" },
        `${at(h.entered_at_ms)} · attempt ${h.attempt} · label ${labelText(h.label, h.provisional)}`))));
    if (!s.history.length) history.append(el("li", { class: "muted" }, "No state recorded."));
  }

  function renderNotKnown(stopped) {
    document.getElementById("state").replaceChildren(badge("UNKNOWN", false));
    document.getElementById("subtitle").textContent = stopped
      ? `${restaurantId} · the owner of this restaurant has no state for this review; stopped asking after `
        + `${NOT_KNOWN_FOR_MS / 1000} s (reload to ask again).`
      : `${restaurantId} · the owner of this restaurant has no state for this review yet (a review just `
        + "produced appears within seconds); asking again every 2 s.";
    document.getElementById("tiles").replaceChildren();
    document.getElementById("history").replaceChildren(el("li", { class: "muted" }, "No state known."));
  }

  // The timeline: every step with where it is (topic, partition, offset), when, the gap since
  // the step before, what it says (a retry's reason, a dead letter's reason...) and its details.
  function details(step) {
    const parts = Object.entries(step.details || {}).filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => el("span", { class: "chip" }, `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`));
    return parts.length ? el("div", { class: "details" }, ...parts) : null;
  }

  function renderTimeline(t) {
    const table = document.getElementById("timeline");
    table.dataset.steps = String(t.steps.length);
    table.tBodies[0].replaceChildren(...t.steps.map((s) => el("tr", { "data-topic": s.topic },
      el("td", { class: "l" }, s.time.replace("T", " ").replace("Z", "")),
      el("td", {}, s.gap_ms === null ? "—" : `+${fmt.ms(s.gap_ms)}`),
      el("td", { class: "l" }, s.topic),
      el("td", {}, s.partition < 0 ? "—" : s.partition),
      el("td", {}, s.offset < 0 ? "—" : s.offset),
      el("td", { class: "l what" }, s.what, details(s)))));
    document.getElementById("timeline-note").textContent =
      `${t.steps.length} records from ${at(t.from_ms)} to ${at(t.to_ms)} · read in ${Math.round(t.read_ms)} ms`;
  }

  let timelineReads = 0;
  async function loadTimeline() {
    const note = document.getElementById("timeline-note");
    const table = document.getElementById("timeline");
    note.textContent = "reading the topics…";
    const read = ++timelineReads;
    try {
      const { body } = await RP.getJSON(`${api}/timeline`);
      if (read === timelineReads) renderTimeline(body);
    } catch (err) {
      if (read !== timelineReads) return;
      table.dataset.steps = "0";
      table.tBodies[0].replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 6 }, err.message)));
      note.textContent = "";
    }
  }

  // The state: 200 is shown and asked again until final; 404 ("not known (yet)") is asked
  // again for NOT_KNOWN_FOR_MS; any other error is shown and asked again (as the other pages).
  const started = Date.now();
  let sawUnfinished = false;
  async function pollState() {
    let next = true;
    try {
      const response = await fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 404) {
        sawUnfinished = true;
        next = Date.now() - started < NOT_KNOWN_FOR_MS;
        renderNotKnown(!next);
        status.textContent = next ? `asked ${fmt.time(Date.now())}` : "stopped asking";
        status.classList.toggle("stale", !next);
      } else if (!response.ok) {
        let detail = "";
        try { detail = (await response.json()).error || ""; } catch (e) { /* not JSON */ }
        throw new Error(response.status === 401 ? "Unauthorized: open this page once with ?token=<token>."
          : `HTTP ${response.status}${detail ? ": " + detail : ""}`);
      } else {
        const body = await response.json();
        renderState(body, response.headers.get("X-ReviewPulse-Worker"));
        if (body.final) {
          next = false;
          status.textContent = `final · updated ${fmt.time(Date.now())}`;
          if (sawUnfinished) loadTimeline();  // the records of its last steps are on the topics now
        } else {
          sawUnfinished = true;
          status.textContent = `updated ${fmt.time(Date.now())}`;
        }
        status.classList.remove("stale");
      }
      showError(null);
    } catch (err) {
      status.classList.add("stale");
      showError(err.message);
    }
    if (next) window.setTimeout(pollState, INTERVAL_MS);
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  document.getElementById("timeline-reload").addEventListener("click", loadTimeline);
  loadTimeline();
  pollState();
})();
