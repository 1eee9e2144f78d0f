// The dashboard: every restaurant's latest closed window, ranked by alert severity.
"use strict";

(() => {
  const { el, fmt } = RP;
  const MAX_ROWS = 300;  // a person scans the top; the filter finds the rest
  const filter = document.getElementById("filter");
  let last = null;

  function tile(label, value, hint, cls) {
    return el("div", { class: "tile" }, el("div", { class: "label" }, label),
      el("div", { class: `value ${cls || ""}` }, value), hint ? el("div", { class: "hint" }, hint) : null);
  }

  function row(r) {
    const href = `/restaurants/${encodeURIComponent(r.restaurant_id)}`;
    const alerts = el("td", { class: "l" });
    // Each alert says which window it judged; one about an earlier window than the row's
    // numbers is shown faded with its age and does not rank the row (issue 33.4).
    for (const a of r.alerts) {
      const when = `window ${fmt.time(a.window_start_ms)}–${fmt.time(a.window_end_ms)}`;
      alerts.append(el("span", { class: `chip ${a.severity}${a.current ? "" : " old"}`, "data-rule": a.rule,
        "data-current": String(a.current), title: `${a.message} (${when}, ${fmt.ms(a.age_ms)} ago)` },
        a.rule, a.current ? null : el("small", {}, ` · ${fmt.ms(a.age_ms)} ago`)));
    }
    if (!r.alerts.length) alerts.append(el("span", { class: "muted" }, "—"));
    const cached = r.cache_hits ? el("small", { class: "cached" }, `${fmt.pct(r.cache_hits / (r.cache_hits + r.llm_calls))} cached`) : null;
    return el("tr", { "data-restaurant": r.restaurant_id, "data-severity": r.severity },
      el("td", {}, RP.pill(r.severity)),
      el("td", { class: "name l" }, el("a", { href, title: r.restaurant_id }, r.restaurant_id)),
      el("td", { class: "l" }, RP.sentiment(r.sentiment_avg)),
      el("td", { class: r.negative_share >= 0.4 ? "bad" : "" }, fmt.pct(r.negative_share)),
      el("td", { title: `${r.reviews} reviews in the window` }, fmt.rate(r.reviews_per_min)),
      el("td", { class: "cost window", title: `${r.llm_calls} LLM calls, ${r.cache_hits} answers from the cache` },
        fmt.usd(r.cost_micro_usd), cached),
      el("td", { class: "cost today" }, fmt.usd(r.cost_today_micro_usd)),
      el("td", { title: `event age p95 ${fmt.ms(r.event_age_p95_ms || 0)} (from occurred_at, lateness included)` },
        fmt.ms(r.processing_lag_p95_ms)),
      el("td", {}, r.orders_delivered ? fmt.ms(r.delivery_delay_p95_ms) : el("span", { class: "muted" }, "no orders")),
      alerts);
  }

  function render() {
    if (!last) return;
    const { body, worker } = last;
    document.getElementById("worker").textContent = `worker ${worker || body.worker}`;
    document.getElementById("subtitle").textContent =
      `Latest closed ${body.window_size_s} s window per restaurant, worst first.`;
    const rows = body.restaurants;
    const crit = rows.filter((r) => r.severity === "CRITICAL").length;
    const warn = rows.filter((r) => r.severity === "WARNING").length;
    const perMin = rows.reduce((s, r) => s + r.reviews_per_min, 0);
    const costToday = rows.reduce((s, r) => s + (r.cost_today_micro_usd || 0), 0);
    document.getElementById("tiles").replaceChildren(
      tile("Restaurants", rows.length, "with a closed window"),
      tile("Critical", crit, "need action now", crit ? "neg" : ""),
      tile("Warning", warn, "look today"),
      tile("Reviews", fmt.rate(perMin), "all restaurants, latest windows"),
      tile("LLM cost today", fmt.usd(costToday), "UTC day, all restaurants"));
    const incomplete = document.getElementById("incomplete");
    incomplete.hidden = !body.incomplete_from.length;
    incomplete.textContent = body.incomplete_from.length
      ? `Cost today and alerts are missing for restaurants owned by: ${body.incomplete_from.join(", ")}` : "";
    const needle = filter.value.trim().toLowerCase();
    const shown = needle ? rows.filter((r) => r.restaurant_id.toLowerCase().includes(needle)) : rows;
    const tbody = document.querySelector("#restaurants tbody");
    if (!shown.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 10 },
        rows.length ? "No restaurant matches the filter." : "Waiting for the first closed window…")));
    } else {
      tbody.replaceChildren(...shown.slice(0, MAX_ROWS).map(row));
    }
    document.getElementById("count").textContent =
      shown.length > MAX_ROWS ? `showing ${MAX_ROWS} of ${shown.length}` : `${shown.length} restaurants`;
  }

  filter.addEventListener("input", render);
  RP.poll(async () => { last = await RP.getJSON("/api/restaurants"); render(); },
    { status: document.getElementById("status") });
})();
