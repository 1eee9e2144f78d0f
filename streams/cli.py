"""The ``reviewpulse`` console script: thin click commands over the packages.

Imports are inside the commands: ``reviewpulse registry`` must not build the Faust app,
and ``reviewpulse --help`` must not touch the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from streams.dev.broker import BROKER_KINDS


@click.group()
def main() -> None:
    """ReviewPulse: LLM-enriched review streams with windowed per-restaurant state."""


@main.command()
def worker() -> None:
    """Run a Faust worker: all agents, tables, the web view and /metrics."""
    from streams import clean_stop
    from streams.app import app, settings

    if clean_stop.begin(settings.data_dir, Path(app.conf.tabledir)):
        click.echo("the last stop was unclean: table stores wiped, restoring them from the changelogs",
                   err=True)
    sys.argv = [
        "reviewpulse", "worker", "--loglevel", settings.log_level,
        "--web-host", settings.web_host, "--web-port", str(settings.web_port),
        "--web-bind", settings.web_host,
    ]
    try:
        app.main()
    except SystemExit as exc:
        if exc.code in (0, None):
            clean_stop.end(settings.data_dir)
        raise


@main.command()
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--bootstrap-servers", default=None,
              help="Kafka holding the _schemas topic (default: REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS).")
def registry(port: int, host: str, bootstrap_servers: str | None) -> None:
    """Run the embedded Confluent-compatible Schema Registry (schemas kept in _schemas)."""
    from schema_registry.server import run
    from streams.settings import load_settings

    run(bootstrap_servers=bootstrap_servers or load_settings().kafka_bootstrap_servers,
        host=host, port=port)


@main.command("llm-sim")
@click.option("--port", type=int, default=8090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--jitter-ms", type=float, default=0.0, show_default=True)
@click.option("--error-rate", type=float, default=0.0, show_default=True, help="Share of 500s.")
@click.option("--rate-429", type=float, default=0.0, show_default=True, help="Share of 429s.")
@click.option("--hang-rate", type=float, default=0.0, show_default=True)
@click.option("--malformed-rate", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=None)
def llm_sim(port: int, host: str, latency_ms: float, jitter_ms: float, error_rate: float,
            rate_429: float, hang_rate: float, malformed_rate: float, seed: int | None) -> None:
    """Run the OpenAI-compatible LLM simulator (answers from the heuristic enricher)."""
    from agents.llm.simulator import SimulatorConfig, run_simulator

    config = SimulatorConfig(
        latency_ms=latency_ms, jitter_ms=jitter_ms, error_500_rate=error_rate,
        rate_429_rate=rate_429, hang_rate=hang_rate, malformed_rate=malformed_rate, seed=seed,
    )
    run_simulator(host=host, port=port, config=config)


@main.group()
def schemas() -> None:
    """Register avro_schemas/ or check them against the registry."""


def _run_schemas(action: str, url: str | None) -> None:
    from streams import schemas as schemas_mod
    from streams.codecs import registry_client
    from streams.progress import Progress
    from streams.settings import load_settings
    from streams.topics import TOPIC_RECORDS

    settings = load_settings(**({"schema_registry_url": url} if url else {}))

    async def go(progress: Any) -> list[schemas_mod.SubjectResult]:
        async with registry_client(settings) as client:
            fn = schemas_mod.register_all if action == "register" else schemas_mod.check_all
            return await fn(client, on_progress=progress.update)

    with Progress(f"{action}ing schemas", total=len(TOPIC_RECORDS)) as progress:
        results = asyncio.run(go(progress))
    for r in results:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.subject:40} {r.record:28} {r.detail}")
    if not all(r.ok for r in results):
        raise SystemExit(1)


@schemas.command("register")
@click.option("--url", default=None, help="Registry URL (default: REVIEWPULSE_SCHEMA_REGISTRY_URL).")
def schemas_register(url: str | None) -> None:
    """Register every schema under its TopicNameStrategy subject."""
    _run_schemas("register", url)


@schemas.command("check")
@click.option("--url", default=None, help="Registry URL (default: REVIEWPULSE_SCHEMA_REGISTRY_URL).")
def schemas_check(url: str | None) -> None:
    """Exit non-zero, naming subject and reason, if a schema is incompatible with the registry."""
    _run_schemas("check", url)


@main.command("produce-sample")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Reviews per second.")
@click.option("--count", type=int, default=1000, show_default=True, help="Reviews to produce.")
@click.option("--seed", type=int, default=7, show_default=True)
def produce_sample(rate: float, count: int, seed: int) -> None:
    """Produce realistic sample traffic with confluent-kafka's AvroSerializer."""
    from streams.dev.sample import produce_sample as produce
    from streams.settings import load_settings

    settings = load_settings()
    stats = produce(bootstrap_servers=settings.kafka_bootstrap_servers,
                    registry_url=settings.schema_registry_url, count=count, rate_per_s=rate,
                    seed=seed, on_progress=lambda s: click.echo(f"produced {s.reviews} reviews"))
    click.echo(f"produced {stats.reviews} reviews, {stats.orders} orders, {stats.duplicates} "
               f"duplicates, {stats.late} late, {stats.poison} poison records")


@main.group()
def dlq() -> None:
    """Inspect (list) or re-publish (replay) the dead letters of reviewpulse.dlq."""


_REASON_HELP = "Only dead letters with this reason (repeatable)."


@dlq.command("list")
@click.option("--reason", "reasons", multiple=True, help=_REASON_HELP)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Print at most N letters (oldest last failure first); counts cover all.")
def dlq_list(reasons: tuple[str, ...], limit: int | None) -> None:
    """One line per dead letter, then the count per reason."""
    from streams import replay
    from streams.settings import load_settings
    from streams.topic_io import read_dead_letters

    letters = read_dead_letters(load_settings(), reasons=reasons)
    for letter in letters[:limit]:
        click.echo(replay.format_letter(letter))
    counts = replay.count_by_reason(letters)
    click.echo(f"{len(letters)} dead letters" + "".join(
        f"\n  {reason:24} {n}" for reason, n in counts.most_common()))


@dlq.command("replay")
@click.option("--reason", "reasons", multiple=True, help=_REASON_HELP)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Replay at most N letters (oldest last failure first).")
def dlq_replay(reasons: tuple[str, ...], limit: int | None) -> None:
    """Re-publish dead letters to their original topic, with an rp-replay count header.

    \b
    Without --reason, letters that can never succeed as they are are skipped:
      unknown_magic_byte, truncated_payload, undecodable, empty_value,
      invalid_value, text_too_long, invalid_id, event_time_too_old,
      invalid_delivery_time, logical_type_mismatch, field_too_long,
      record_too_large, output_too_large (name them with --reason to
      replay them anyway, e.g. after raising REVIEWPULSE_TEXT_MAX_CHARS).
    llm_exhausted letters are re-enriched with the LLM and written to
    reviews.enriched (a re-published copy would be dropped by the event_id dedupe).
    Replaying twice publishes twice: a copy that fails again makes a new dead letter
    (rp-replay counts up), a copy that succeeds twice is enriched once.
    """
    from streams import replay
    from streams.progress import Progress
    from streams.settings import load_settings
    from streams.topic_io import read_dead_letters

    settings = load_settings()
    letters = read_dead_letters(settings, reasons=reasons)
    chosen, skipped = replay.select_for_replay(letters, reasons=reasons)
    chosen = chosen[:limit]
    click.echo(f"replaying {len(chosen)} of {len(letters)} dead letters"
               + (f" ({len(skipped)} with permanent reasons skipped)" if skipped else ""))
    with Progress("replaying dead letters", total=len(chosen)) as progress:
        stats = replay.replay(settings, chosen, on_progress=progress.update)
    click.echo(f"re-published {stats.republished}, re-enriched {stats.reenriched}, "
               f"LLM failed again {stats.failed}, not decodable {stats.undecodable}")
    if stats.failed:
        raise SystemExit(1)


def _time_ms(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    from streams.replay import parse_time_ms

    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _optional_time_ms(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else _time_ms(ctx, param, value)


@main.command()
@click.option("--from", "from_ms", required=True, callback=_time_ms,
              help="Start (inclusive): ISO 8601 (naive = UTC) or epoch ms.")
@click.option("--to", "to_ms", required=True, callback=_time_ms, help="End (exclusive), same forms.")
@click.option("--model", default=None, help="Model to re-enrich with (default: REVIEWPULSE_LLM_MODEL).")
@click.option("--prompt-version", default=None,
              help="Prompt version to record; only this build's prompt can be used.")
@click.option("--dry-run", is_flag=True, help="Only count the reviews and estimate tokens and cost.")
def reprocess(from_ms: int, to_ms: int, model: str | None, prompt_version: str | None,
              dry_run: bool) -> None:
    """Re-enrich the reviews.created records of a time range (by Kafka timestamp).

    Writes new ReviewEnriched records (same event_id, the new model and prompt version,
    header rp-reprocess) to reviews.enriched; consumers keep the newest per event_id.
    Windowed aggregates and alerts are not recomputed.
    """
    from streams import replay
    from streams.progress import Progress
    from streams.settings import load_settings

    settings = load_settings()
    version = prompt_version or replay.PROMPT_VERSIONS[-1]
    model = model or settings.llm_model
    # The total is known once the range is read; a dry run re-enriches nothing, so shows no bar.
    progress = Progress("re-enriching reviews", total=0)
    try:
        with progress if not dry_run else contextlib.nullcontext():
            report, stats = replay.reprocess(
                settings, from_ms=from_ms, to_ms=to_ms, model=model, prompt_version=version,
                dry_run=dry_run, on_progress=progress.update)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    est = report.estimate
    click.echo(f"{report.records} records in range: {len(report.reviews)} reviews to re-enrich, "
               f"{report.duplicates} duplicates, {report.invalid} not decodable or invalid")
    click.echo(f"estimate with {model} / {version}: ~{est.tokens_in} tokens in, at most "
               f"{est.tokens_out} tokens out, ~${est.cost_micro_usd / 1_000_000:.6f}")
    if stats is not None:
        click.echo(f"wrote {stats.written} ReviewEnriched records; LLM failed for {stats.failed}"
                   + "".join(f"\n  {why}: {n}" for why, n in stats.failures.most_common()))
        if stats.failed:
            raise SystemExit(1)


@main.command()
@click.option("--from", "from_ms", required=True, callback=_time_ms,
              help="Start (inclusive): ISO 8601 (naive = UTC) or epoch ms.")
@click.option("--to", "to_ms", required=True, callback=_time_ms, help="End (exclusive), same forms.")
@click.option("--by", type=click.Choice(["occurred", "produced"]), default="occurred", show_default=True,
              help="Place records by occurred_at (Kafka time when unreadable or out of bounds) "
                   "or by Kafka timestamp.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
def reconcile(from_ms: int, to_ms: int, by: str, as_json: bool) -> None:
    """Account for every input record of a time range; exit 1 if any is missing.

    \b
    Per input topic: consumed = enriched (reviews) or folded (orders, not individually
    traceable) + dead-lettered + duplicates + in retry + missing. Every missing event id
    (topic:partition:offset when undecodable) is listed. Reads reviews.created,
    orders.delivered, reviews.enriched, reviews.retry and reviewpulse.dlq to their ends.
    """
    import json

    from streams import reconcile as rec
    from streams.settings import load_settings

    try:
        reports = rec.reconcile(load_settings(), from_ms=from_ms, to_ms=to_ms, by=by)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(rec.reports_json(reports, from_ms=from_ms, to_ms=to_ms, by=by), indent=2))
    else:
        for line in rec.format_reports(reports, from_ms=from_ms, to_ms=to_ms, by=by):
            click.echo(line)
    if rec.any_missing(reports):
        raise SystemExit(1)


@main.command()
@click.option("--event-id", default=None, help="The review's event_id (the envelope's).")
@click.option("--review-id", default=None, help="The review's entity.review_id.")
@click.option("--trace-id", default=None, help="The correlation id (metadata.trace_id).")
@click.option("--from", "from_ms", default=None, callback=_optional_time_ms,
              help="Start (inclusive, Kafka time): ISO 8601 (naive = UTC) or epoch ms. Default: 24 h ago.")
@click.option("--to", "to_ms", default=None, callback=_optional_time_ms,
              help="End (exclusive), same forms. Default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as one JSON document.")
def trace(event_id: str | None, review_id: str | None, trace_id: str | None, from_ms: int | None,
          to_ms: int | None, as_json: bool) -> None:
    """Every record of one review, on every topic, in time order; exit 1 if none matches.

    \b
    Reads reviews.created, the by-restaurant topic, reviews.retry (each attempt and why),
    reviews.enriched, reviews.critical_alert, the DLQ (with reasons) and
    restaurants.aggregates (the windows that counted the review, with its final or
    provisional label), from --from to --to.
    """
    import json
    import time

    from streams import trace as tr
    from streams.settings import load_settings

    now_ms = int(time.time() * 1000)
    try:
        wanted = tr.Wanted(event_id=event_id, review_id=review_id, trace_id=trace_id)
        timeline = tr.trace(load_settings(), wanted,
                            from_ms=now_ms - tr.DEFAULT_SPAN_MS if from_ms is None else from_ms,
                            to_ms=now_ms + 1 if to_ms is None else to_ms)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not timeline.steps:
        click.echo("no record of that review in the range (try a wider --from/--to)", err=True)
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps(timeline.to_json(), indent=2))
    else:
        for line in tr.format_timeline(timeline):
            click.echo(line)


@main.command()
@click.option("--rate", type=float, default=40.0, show_default=True)
@click.option("--count", type=int, default=0, show_default=True, help="0: run until Ctrl-C.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("data/demo"), show_default=True)
@click.option("--broker", type=click.Choice(BROKER_KINDS), default="tansu", show_default=True,
              help="tansu: in memory, nothing but Python; kafka: Apache Kafka from its Maven jars.")
def demo(rate: float, count: int, data_dir: Path, broker: str) -> None:
    """Run the whole embedded system: broker, registry, LLM simulator, worker, sample traffic."""
    from streams.dev.demo import run_demo

    run_demo(rate=rate, count=count, data_dir=data_dir, broker=broker)


if __name__ == "__main__":
    main()
