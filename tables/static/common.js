// Shared by the pages: authenticated fetch, number formats, safe DOM building (text only).
"use strict";

const RP = (() => {
  // A token passed once as ?token= was turned into an HttpOnly cookie by the worker;
  // drop it from the address bar so it is not bookmarked or shared.
  const url = new URL(window.location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  async function getJSON(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) throw new Error("Unauthorized: open this page once with ?token=<token>.");
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).error || ""; } catch (e) { /* not JSON */ }
      throw new Error(`HTTP ${response.status}${detail ? ": " + detail : ""}`);
    }
    return { body: await response.json(), worker: response.headers.get("X-ReviewPulse-Worker") };
  }

  // el("td", {class: "x"}, "text", childNode): children are text (never parsed as HTML) or nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const fmt = {
    // Money arrives as integer micro-dollars. One review costs about 54 micro-dollars at the
    // default prices, so a restaurant's window or day is usually a fraction of a cent: below
    // one cent every micro-dollar is shown ($0.000054), so cells can be read and compared;
    // up to a dollar four decimals ($0.0123), from a dollar on cents ($1,234.56).
    usd(micro) {
      if (micro === null || micro === undefined) return "—";
      if (micro === 0) return "$0";
      const usd = micro / 1e6;
      if (Math.abs(micro) < 10000) return `$${usd.toFixed(6)}`;
      if (Math.abs(usd) < 1) return `$${usd.toFixed(4)}`;
      return `$${usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
    },
    ms(value) {
      if (!value) return "0 s";
      if (value < 1000) return `${value} ms`;
      if (value < 120000) return `${(value / 1000).toFixed(value < 10000 ? 1 : 0)} s`;
      return `${(value / 60000).toFixed(1)} min`;
    },
    pct(share) { return `${Math.round(share * 100)}%`; },
    score(v) { return (v > 0 ? "+" : "") + v.toFixed(2); },
    rate(v) { return `${v.toFixed(v < 10 ? 1 : 0)}/min`; },
    time(ms) { return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }); },
    ago(ms) {
      const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
      return s < 60 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
    },
  };

  function pill(severity) { return el("span", { class: `pill ${severity}` }, severity); }

  function sentiment(avg) {
    const track = el("span", { class: "track" });
    const bar = el("i");
    const width = Math.min(50, Math.abs(avg) * 50);
    bar.style.left = avg >= 0 ? "50%" : `${50 - width}%`;
    bar.style.width = `${width}%`;
    bar.style.background = avg >= 0 ? "var(--ok)" : "var(--crit)";
    track.append(bar);
    return el("span", { class: "sent" }, track, el("span", { class: avg >= 0 ? "pos" : "neg" }, fmt.score(avg)));
  }

  // Poll every 2 s; show the time of the last good answer and mark the page stale on errors.
  function poll(load, { intervalMs = 2000, status } = {}) {
    async function tick() {
      try {
        await load();
        if (status) { status.textContent = `updated ${fmt.time(Date.now())}`; status.classList.remove("stale"); }
        showError(null);
      } catch (err) {
        if (status) status.classList.add("stale");
        showError(err.message);
      }
      window.setTimeout(tick, intervalMs);
    }
    tick();
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.hidden = !message;
    box.textContent = message || "";
  }

  return { getJSON, el, svg, fmt, pill, sentiment, poll };
})();
