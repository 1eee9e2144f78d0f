// One restaurant: KPIs of the latest closed window, the window history chart, alerts and
// recent critical reviews. Review text is untrusted: it only ever goes through textContent.
"use strict";

(() => {
  const { el, svg, fmt } = RP;
  const restaurantId = decodeURIComponent(window.location.pathname.replace(/^\/restaurants\//, "").replace(/\/$/, ""));
  const pagePath = `/restaurants/${encodeURIComponent(restaurantId)}`;
  const api = `/api${pagePath}`;
  document.getElementById("name").textContent = restaurantId;
  document.title = `ReviewPulse · ${restaurantId}`;

  function tile(label, value, hint, cls) {
    return el("div", { class: "tile" }, el("div", { class: "label" }, label),
      el("div", { class: `value ${cls || ""}` }, value), hint ? el("div", { class: "hint" }, hint) : null);
  }

  function renderDetail(d, worker) {
    document.getElementById("worker").textContent = `answered by ${worker || d.worker} · partition ${d.partition}`;
    document.getElementById("severity").replaceChildren(RP.pill(d.severity));
    const w = d.latest;
    document.getElementById("subtitle").textContent = w
      ? `Latest closed window ${fmt.time(w.window_start_ms)}–${fmt.time(w.window_end_ms)} (${d.window_size_s} s), closed ${fmt.ago(w.closed_at_ms)}.`
      : "No closed window yet: the first one closes after its end plus the grace period.";
    const capShare = d.daily_cap_micro_usd ? d.cost_today_micro_usd / d.daily_cap_micro_usd : 0;
    document.getElementById("tiles").replaceChildren(
      tile("Sentiment avg", w ? fmt.score(w.sentiment_avg) : "—", "−1 … +1", w && w.sentiment_avg < 0 ? "neg" : "pos"),
      tile("Negative share", w ? fmt.pct(w.negative_share) : "—", w ? `${w.negative + w.critical} of ${w.reviews} reviews` : ""),
      tile("Reviews", w ? fmt.rate(w.reviews_per_min) : "—", w ? `${w.reviews} in the window` : ""),
      tile("LLM cost · window", w ? fmt.usd(w.cost_micro_usd) : "—", w ? `${w.fallbacks} fallback, ${w.budget_skips} budget-skipped` : ""),
      tile("LLM cost · today", fmt.usd(d.cost_today_micro_usd), `${fmt.pct(capShare)} of the ${fmt.usd(d.daily_cap_micro_usd)} daily cap`, capShare >= 1 ? "neg" : ""),
      tile("Processing lag p95", w ? fmt.ms(w.processing_lag_p95_ms) : "—", "reached Kafka → folded"),
      tile("Event age p95", w && w.event_age_p95_ms !== undefined ? fmt.ms(w.event_age_p95_ms) : "—", "occurred → folded, lateness included"),
      tile("Delivery delay p95", w && w.orders_delivered ? fmt.ms(w.delivery_delay_p95_ms) : "—", w ? `${w.orders_delivered} orders delivered` : ""));

    const alerts = document.getElementById("alerts");
    alerts.replaceChildren(...d.alerts.map((a) => el("li", { class: a.current ? "" : "old", "data-rule": a.rule },
      RP.pill(a.severity), " ", el("strong", {}, a.rule),
      el("div", { class: "small" }, `${a.message} Window ${fmt.time(a.window_start_ms)}–${fmt.time(a.window_end_ms)}`
        + (a.current ? "." : `, ${fmt.ms(a.age_ms)} ago: an earlier window than the tiles show.`)))));
    if (!d.alerts.length) alerts.append(el("li", { class: "muted" }, "No alert applies to the latest window."));

    const list = document.getElementById("critical");
    list.replaceChildren(...d.critical_reviews.map((r) => el("li", { "data-event": r.event_id, "data-review": r.review_id },
      el("div", { class: "small" }, `${"★".repeat(r.rating)}${"☆".repeat(5 - r.rating)} · score ${fmt.score(r.sentiment_score)} · `
        + `${(r.categories || []).join(", ") || "no category"} · ${fmt.time(r.occurred_at)} · ${r.status}`,
        r.review_id ? el("a", { class: "follow", href: `${pagePath}/reviews/${encodeURIComponent(r.review_id)}` },
          "Follow this review →") : null),
      el("p", { class: "review-text" }, r.text))));
    if (!d.critical_reviews.length) {
      list.append(el("li", { class: "muted" }, "No critical review since this worker took over the restaurant."));
    }
  }

  // Bars: reviews per window (left scale). Line: sentiment average (right scale, −1 … +1).
  function renderChart(windows) {
    const box = document.getElementById("chart");
    if (!windows.length) { box.replaceChildren(el("p", { class: "empty" }, "No window yet.")); return; }
    const W = 760, H = 260, m = { l: 66, r: 44, t: 14, b: 30 };
    const iw = W - m.l - m.r, ih = H - m.t - m.b;
    const maxReviews = Math.max(1, ...windows.map((w) => w.reviews));
    const band = iw / windows.length;
    const x = (i) => m.l + band * i + band / 2;
    const barsH = ih * 0.45;  // bars use the lower part, so the sentiment line stays readable
    const yCount = (n) => m.t + ih - (n / maxReviews) * barsH;
    const ySent = (s) => m.t + ((1 - s) / 2) * ih;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Window history" });
    for (const s of [-1, -0.5, 0, 0.5, 1]) {
      root.append(svg("line", { class: "grid", x1: m.l, x2: W - m.r, y1: ySent(s), y2: ySent(s) }));
      root.append(svg("text", { x: W - m.r + 6, y: ySent(s) + 4 }, fmt.score(s)));
    }
    root.append(svg("text", { x: 4, y: m.t + ih - barsH + 4 }, `${maxReviews} reviews`));
    root.append(svg("text", { x: 4, y: m.t + ih }, 0));
    root.append(svg("line", { class: "axis", x1: m.l, x2: W - m.r, y1: m.t + ih, y2: m.t + ih }));
    const step = Math.max(1, Math.ceil(windows.length / 8));
    windows.forEach((w, i) => {
      const bw = Math.max(2, band * 0.6);
      const bar = svg("rect", { class: `barr${w.closed ? "" : " open"}`, x: x(i) - bw / 2, y: yCount(w.reviews),
        width: bw, height: Math.max(0, m.t + ih - yCount(w.reviews)), rx: 2 });
      bar.append(svg("title", {}, `${fmt.time(w.window_start_ms)}: ${w.reviews} reviews${w.closed ? "" : " (open)"}`));
      root.append(bar);
      if (i % step === 0) root.append(svg("text", { x: x(i), y: H - 10, "text-anchor": "middle" }, fmt.time(w.window_start_ms)));
    });
    const withReviews = windows.map((w, i) => [w, i]).filter(([w]) => w.reviews > 0);
    if (withReviews.length > 1) {
      root.append(svg("polyline", { class: "line",
        points: withReviews.map(([w, i]) => `${x(i)},${ySent(w.sentiment_avg)}`).join(" ") }));
    }
    for (const [w, i] of withReviews) {
      const dot = svg("circle", { class: `point${w.sentiment_avg < 0 ? " neg" : ""}`, cx: x(i), cy: ySent(w.sentiment_avg), r: 4,
        "data-window-start": w.window_start_ms, "data-sentiment": w.sentiment_avg, "data-reviews": w.reviews });
      dot.append(svg("title", {}, `${fmt.time(w.window_start_ms)}: sentiment ${fmt.score(w.sentiment_avg)}, `
        + `${fmt.pct(w.negative_share)} negative, ${w.reviews} reviews`));
      root.append(dot);
    }
    box.replaceChildren(root);
  }

  // The range picker: "Live" charts the windows the owner keeps (about an hour, refreshed);
  // a range reads the closed windows back from restaurants.aggregates (any worker, survives
  // restarts), once per choice, tumbling windows, oldest first.
  let spanMs = 0;
  const note = document.getElementById("range-note");
  const chartBox = document.getElementById("chart");

  function fromTopic(w) {  // a RestaurantWindowAggregate as the chart draws a window
    return { window_start_ms: w.window_start, reviews: w.reviews, sentiment_avg: w.sentiment_avg,
      negative_share: w.reviews ? (w.negative + w.critical) / w.reviews : 0, closed: true };
  }

  async function loadRange() {
    const to = Date.now();
    const { body } = await RP.getJSON(`${api}/windows?from=${to - spanMs}&to=${to}`);
    chartBox.dataset.source = "history";
    chartBox.dataset.windows = String(body.windows.length);
    renderChart(body.windows.map(fromTopic));
    note.textContent = `${body.windows.length} closed windows from restaurants.aggregates · read in ${Math.round(body.read_ms)} ms`;
  }

  for (const button of document.querySelectorAll("#range button")) {
    button.addEventListener("click", async () => {
      for (const b of document.querySelectorAll("#range button")) b.setAttribute("aria-pressed", String(b === button));
      spanMs = Number(button.dataset.span || 0);
      note.textContent = spanMs ? "reading…" : "";
      if (spanMs) {
        try { await loadRange(); } catch (err) { note.textContent = err.message; }
      }
    });
  }

  RP.poll(async () => {
    const [detail, history] = await Promise.all([RP.getJSON(api), spanMs ? null : RP.getJSON(`${api}/windows`)]);
    renderDetail(detail.body, detail.worker);
    if (history) {
      chartBox.dataset.source = "live";
      chartBox.dataset.windows = String(history.body.windows.length);
      renderChart(history.body.windows);
    }
  }, { status: document.getElementById("status") });
})();
