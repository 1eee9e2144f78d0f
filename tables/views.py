"""HTTP endpoints of each worker: liveness, readiness, /metrics, the web view and its JSON API.

Where the data lives, and so who answers:

- the dashboard list comes from the global table ``latest``, and from every worker for the
  partitions it owns (``/api/_local/owned``: its rows of ``latest``, cost today, alerts it
  emitted recently), merged; the owner's copy wins;
- a per-restaurant request (``/api/restaurants/{id}`` and ``…/windows``) is answered by the
  worker that owns the restaurant's partition, and proxied there by any other worker;
- what is read back from the topics (a restaurant's windows over a range, a review's
  timeline) is answered by whichever worker is asked.

Routing cannot use ``@app.table_route``: it hashes the *JSON-serialized* table key, while
the restaurant's partition is chosen when decode sends ``restaurant_id.encode()`` (raw
bytes) to the by-restaurant topic with aiokafka's default partitioner; the tables are
written from that partition. So :func:`restaurant_partition` hashes the raw bytes the
same way, and the owner is the worker the assignor gave that partition of the panes
changelog (``app.router.table_metadata``).

Auth: when ``web_auth_token`` is set every route but /health, /ready and /metrics needs
``Authorization: Bearer <token>``. A browser opens a page once with ``?token=<token>``;
the worker answers with an HttpOnly, SameSite=Strict cookie holding it, and the page
drops the token from the address bar. The pages are shells: data comes from the API and
is written with ``textContent`` only (review text is untrusted).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from pathlib import Path
from typing import Any

from aiohttp import web as aioweb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics, window_history
from streams.app import app, runtime
from streams.codecs import parse_time_ms, plain_record
from streams.protocol import (
    closure_key,
    day_key,
    day_of_key,
    pane_key,
    restaurant_of_day_key,
)
from tables.panes import TUMBLING_CLOSED, read_closure
from tables.routing import (
    H_WORKER,
    _ident,
    _peer_headers,
    owned_partitions,
    restaurant_partition,
    routed,
    self_url,
)
from tables.rules import RuleThresholds
from tables.values import PaneAggregate
from tables.webdata import (
    SEVERITY_RANK,
    current_alerts,
    current_severity,
    history,
    observe_latest,
    pane_from_record,
    rank_alerts,
    recent,
    summary_row,
    window_alerts,
    window_stats,
)
from tables.windows import WindowKind, WindowSpec, utc_day

STATIC_DIR = Path(__file__).parent / "static"
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
TOKEN_COOKIE = "rp_token"
# What the stage closes and alerts by, read from the same settings (never from the stage).
SPEC = WindowSpec.from_settings(app.settings)
THRESHOLDS = RuleThresholds.from_settings(app.settings)
FANOUT_TIMEOUT_S = 1.5  # the dashboard polls every 2 s; a slow peer must not stall it
settings = app.settings
tables = app.tables_


# --- the owner's answers ------------------------------------------------------------------------
def _closure(restaurant_id: str) -> dict[str, Any]:
    return read_closure(tables.closures.get(closure_key(restaurant_id)))


def _cost_today(restaurant_id: str, now_ms: int) -> int:
    entry = tables.daily_cost.get(day_key(restaurant_id, utc_day(now_ms)[0])) or {}
    return int(entry.get("spent", 0))


def windows_of(restaurant_id: str) -> list[dict[str, Any]]:
    """Tumbling windows over the panes the owner keeps (about one hopping window), oldest first."""
    closure = _closure(restaurant_id)
    size = SPEC.size_ms(WindowKind.TUMBLING)
    thresholds = THRESHOLDS
    by_window: dict[int, PaneAggregate] = {}
    for start in closure["panes"]:
        stored = tables.panes.get(pane_key(restaurant_id, start))
        if stored:
            by_window.setdefault(start - start % size, PaneAggregate()).merge_from(
                PaneAggregate.from_json(stored)
            )
    out = [
        {
            **window_stats(pane_from_record(r), start_ms=r["window_start"], end_ms=r["window_end"]),
            "closed": True,
            "alerts": window_alerts(pane_from_record(r), thresholds=thresholds, start_ms=r["window_start"],
                                    end_ms=r["window_end"]),
        }
        for r in history.windows(restaurant_id)
        if r["window_start"] not in by_window
    ]
    for start in sorted(by_window):
        window = by_window[start]
        closed = closure[TUMBLING_CLOSED] is not None and start + size <= closure[TUMBLING_CLOSED]
        row = {**window_stats(window, start_ms=start, end_ms=start + size), "closed": closed}
        row["alerts"] = (window_alerts(window, by_window.get(start - size), thresholds=thresholds,
                                       start_ms=start, end_ms=start + size) if closed else [])
        out.append(row)
    return sorted(out, key=lambda w: w["window_start_ms"])


def restaurant_detail(restaurant_id: str, partition: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    latest = tables.latest.get(restaurant_id)
    windows = windows_of(restaurant_id)
    closed = [w for w in windows if w["closed"]]
    row = summary_row(restaurant_id, latest, thresholds=THRESHOLDS) if latest else None
    if row is not None and closed and closed[-1]["window_start_ms"] == row["window_start_ms"]:
        row["alerts"] = closed[-1]["alerts"]  # with sentiment_drop: the owner knows the previous window
    emitted = current_alerts(restaurant_id, now_ms=now_ms, spec=SPEC)
    alerts = rank_alerts((row["alerts"] if row else []) + emitted,
                         latest_end_ms=row["window_end_ms"] if row else None, now_ms=now_ms)
    return {
        "restaurant_id": restaurant_id,
        "worker": self_url(),
        "partition": partition,
        "owner": partition in owned_partitions(),
        "latest": row,
        "open": [w for w in windows if not w["closed"]],
        "cost_today_micro_usd": _cost_today(restaurant_id, now_ms),
        "daily_cap_micro_usd": settings.restaurant_daily_cost_cap_micro_usd,
        "severity": current_severity(alerts),
        "alerts": alerts,
        "recent_alerts": recent.alerts(restaurant_id),
        "critical_reviews": recent.critical(restaurant_id),
        "window_size_s": settings.window_size_s,
    }


def restaurant_windows(restaurant_id: str, partition: int) -> dict[str, Any]:
    return {
        "restaurant_id": restaurant_id,
        "worker": self_url(),
        "partition": partition,
        "window_size_s": settings.window_size_s,
        "windows": windows_of(restaurant_id),
    }


def owned_summary() -> dict[str, Any]:
    """This worker's part of the dashboard: cost today and emitted alerts, for its partitions."""
    now_ms = int(time.time() * 1000)
    today = utc_day(now_ms)[0]
    cost = {
        restaurant_of_day_key(key): int(value.get("spent", 0))
        for key, value in tables.daily_cost.items()
        if value and day_of_key(key) == today
    }
    mine = owned_partitions()
    alerts = {
        r: current_alerts(r, now_ms=now_ms, spec=SPEC)
        for r in recent.alerted_restaurants()
        if restaurant_partition(r) in mine
    }
    # The owner's own rows of ``latest`` too: faust does not keep a GlobalTable in sync across
    # workers (faust-streaming #283) unless it is declared synchronize_all_active_partitions.
    latest = {r: rec for r, rec in tables.latest.items() if rec and restaurant_partition(r) in mine}
    return {
        "worker": self_url(),
        "partitions": sorted(mine),
        "cost_today_micro_usd": cost,
        "alerts": {r: a for r, a in alerts.items() if a},
        "latest": latest,
    }


async def cluster_owned() -> tuple[list[dict[str, Any]], list[str]]:
    """Every worker's :func:`owned_summary` (this one's computed here); and peers that failed."""
    peers = {str(h).rstrip("/") for h in app.router.tables_metadata()} - {self_url()}
    peers = {p for p in peers if _ident(p) != _ident(self_url())}

    async def ask(peer: str) -> dict[str, Any]:
        response = await runtime.http.get(
            f"{peer}/api/_local/owned", headers=_peer_headers(), timeout=FANOUT_TIMEOUT_S
        )
        response.raise_for_status()
        return dict(response.json())

    answers = await asyncio.gather(*(ask(p) for p in sorted(peers)), return_exceptions=True)
    parts = [owned_summary()] + [a for a in answers if isinstance(a, dict)]
    failed = [p for p, a in zip(sorted(peers), answers, strict=True) if not isinstance(a, dict)]
    return parts, failed


# --- auth -----------------------------------------------------------------------------------
def _token_ok(candidate: str | None) -> bool:
    token = settings.web_auth_token
    assert token is not None
    return candidate is not None and hmac.compare_digest(
        candidate.encode(), token.get_secret_value().encode()
    )


@aioweb.middleware
async def require_token(request: aioweb.Request, handler: Any) -> Any:
    """Bearer token (or the page cookie) on every route but the probes and /metrics."""
    if settings.web_auth_token is None or request.path in OPEN_PATHS:
        return await handler(request)
    bearer = request.headers.get("Authorization", "")
    if bearer.startswith("Bearer ") and _token_ok(bearer[len("Bearer ") :].strip()):
        return await handler(request)
    if _token_ok(request.cookies.get(TOKEN_COOKIE)):
        return await handler(request)
    query_token = request.query.get("token")
    if request.method == "GET" and _token_ok(query_token):
        response = await handler(request)
        response.set_cookie(TOKEN_COOKIE, query_token, httponly=True, samesite="Strict", path="/")
        return response
    if request.path.startswith("/api/"):
        return aioweb.json_response(
            {"error": "unauthorized: send Authorization: Bearer <token>"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return aioweb.Response(
        status=401,
        content_type="text/html",
        headers={"WWW-Authenticate": "Bearer"},
        text="<!doctype html><title>ReviewPulse</title><p>Unauthorized: open this "
        "page once with <code>?token=&lt;token&gt;</code>.</p>",
    )


app.web.web_app.middlewares.append(require_token)
app.web.add_static("/static/", STATIC_DIR)


@app.timer(max(1.0, settings.window_size_s / 4), name="web-history")
async def collect_history() -> None:
    """Windows close once per window size: a quarter of it catches every one (tables.webdata)."""
    for restaurant_id, record in tables.latest.items():
        if record:
            observe_latest(restaurant_id, record)


# --- routes ---------------------------------------------------------------------------------
def page(view: Any, name: str) -> Any:
    return view.html(
        (STATIC_DIR / name).read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    """Liveness: the event loop answers, and nothing is dead (streams.health): the app has not
    crashed, no agent or endless task died, no commit is stuck while records wait. Such a
    worker keeps its process and this web server while nothing flows: 503 then, with every
    problem found, so Kubernetes restarts it from its last commit (issue 30, finding 8)."""
    problems = app.health.problems()
    if problems:
        return web.json({"status": "unhealthy", "problems": problems}, status=503)
    return web.json({"status": "ok"})


@app.page("/ready")
async def ready(web: Any, request: Any) -> Any:
    """Readiness: 503 until the worker's topics exist, it joined its group, got its assignment
    and restored its tables; and again while it rebalances or restores (streams.readiness)."""
    checks = app.readiness.checks()
    if not all(checks.values()):
        return web.json({"status": "starting", "checks": checks}, status=503)
    return web.json({"status": "ready", "checks": checks})


@app.page("/metrics")
async def prometheus_metrics(web: Any, request: Any) -> Any:
    """Prometheus text format; gauges that drift with time are read at scrape time."""
    app.health.problems()  # reviewpulse_worker_healthy and the commit stalls, as /health sees them now
    if hasattr(runtime, "llm"):  # started
        runtime.llm.report_budgets()
        _ = runtime.llm.breaker.state  # an open breaker past its timeout reads (and reports) half-open
    return web.bytes(generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/")
async def dashboard(web: Any, request: Any) -> Any:
    return page(web, "index.html")


@app.page("/restaurants/{restaurant_id}")
async def restaurant_page(web: Any, request: Any, restaurant_id: str) -> Any:
    return page(web, "restaurant.html")


@app.page("/api/restaurants")
async def api_restaurants(web: Any, request: Any) -> Any:
    """Every restaurant with a closed window, worst first (severity, negative share, volume)."""
    await runtime.ready()
    parts, failed = await cluster_owned()
    records = {r: rec for r, rec in tables.latest.items() if rec}
    for part in parts:
        records.update(part["latest"])  # the owner's copy wins
    rows = {r: summary_row(r, rec, thresholds=THRESHOLDS) for r, rec in records.items()}
    emitted: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for restaurant_id, cost in part["cost_today_micro_usd"].items():
            if restaurant_id in rows:
                rows[restaurant_id]["cost_today_micro_usd"] = cost
        for restaurant_id, alerts in part["alerts"].items():
            emitted.setdefault(restaurant_id, []).extend(alerts)
    now_ms = int(time.time() * 1000)
    for restaurant_id, row in rows.items():  # ranked by what is true now (issue 33.4)
        row["alerts"] = rank_alerts(row["alerts"] + emitted.get(restaurant_id, []),
                                    latest_end_ms=row["window_end_ms"], now_ms=now_ms)
        row["severity"] = current_severity(row["alerts"])
    ordered = sorted(
        rows.values(),
        key=lambda r: (
            -SEVERITY_RANK[r["severity"]],
            -r["negative_share"],
            -r["reviews"],
            r["restaurant_id"],
        ),
    )
    return web.json(
        {
            "worker": self_url(),
            "generated_at_ms": int(time.time() * 1000),
            "window_size_s": settings.window_size_s,
            "incomplete_from": failed,
            "restaurants": ordered,
        },
        headers={H_WORKER: self_url()},
    )


@app.page("/api/_local/owned")
async def api_local_owned(web: Any, request: Any) -> Any:
    await runtime.ready()
    return web.json(owned_summary(), headers={H_WORKER: self_url()})


@app.page("/api/restaurants/{restaurant_id}")
async def api_restaurant(web: Any, request: Any, restaurant_id: str) -> Any:
    return await routed(web, request, restaurant_id, restaurant_detail)


@app.page("/api/restaurants/{restaurant_id}/windows")
async def api_restaurant_windows(web: Any, request: Any, restaurant_id: str) -> Any:
    """The open and recent windows (the owner answers); with ``from`` and ``to``, the closed
    windows of that range read back from ``restaurants.aggregates`` (any worker answers)."""
    if "from" in request.query or "to" in request.query:
        return await restaurant_history(web, request, restaurant_id)
    return await routed(web, request, restaurant_id, restaurant_windows)


async def restaurant_history(web: Any, request: Any, restaurant_id: str) -> Any:
    """``?from=&to=[&kind=TUMBLING|HOPPING]`` (epoch ms or ISO 8601): the windows of the kind
    starting in the range, oldest first; 400 with the reason for a bad or too wide range."""
    await runtime.ready()
    query = request.query
    kind = query.get("kind", "TUMBLING").upper()
    try:
        if "from" not in query or "to" not in query:
            raise window_history.RangeError("give both 'from' and 'to' (epoch ms or ISO 8601)")
        from_ms, to_ms = parse_time_ms(query["from"]), parse_time_ms(query["to"])
        if kind not in window_history.WINDOW_KINDS:
            raise window_history.RangeError(f"kind must be one of {window_history.WINDOW_KINDS}")
        window_history.check_range(from_ms, to_ms, max_range_s=settings.history_max_range_s)
    except ValueError as exc:
        return web.json({"error": str(exc)}, status=400, headers={H_WORKER: self_url()})
    started = time.perf_counter()
    longest_ms = max(SPEC.window_size_s, SPEC.hopping_size_s) * 1000
    found = await asyncio.to_thread(
        window_history.scan, settings, restaurant_id, partition=restaurant_partition(restaurant_id),
        from_ms=from_ms, to_ms=to_ms, longest_window_ms=longest_ms)
    decoded = [plain_record(await runtime.codecs.decode("RestaurantWindowAggregate", value))
               for value in found.values]
    windows = window_history.select(decoded, from_ms=from_ms, to_ms=to_ms, kind=kind)
    return web.json({"restaurant_id": restaurant_id, "kind": kind, "from_ms": from_ms, "to_ms": to_ms,
                     "windows": windows, "records_read": found.records_read,
                     "read_ms": round((time.perf_counter() - started) * 1000, 1)},
                    headers={H_WORKER: self_url()})
