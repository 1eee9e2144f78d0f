"""Builds the ``faust.App`` from Settings: its topics, its tables, and its runtime service.

The module-level ``app`` (and its not-yet-started ``runtime``) is the only thing built at
import time, because Faust's CLI and autodiscovery need it; every client is built when
the runtime service starts (:mod:`streams.runtime`).

Faust's own environment variables (BROKER_URL, WEB_PORT, APP_STORE, ...) would override
keyword arguments, so every value is passed explicitly from :class:`Settings`.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams import admin
from streams.faust.app import ReviewPulseApp
from streams.faust.tables import MarksTable
from streams.health import Health
from streams.readiness import Readiness
from streams.runtime import Runtime, install
from streams.settings import BrokerFlavor, ProcessingGuarantee, Settings, load_settings
from streams.topics import declare_topics
from streams.transactions import StageTransactions
from tables.state import CLOSURES, DAILY_COST, DEDUPE, LATEST, PANES, REVIEW_STATES, Tables


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def _credentials(settings: Settings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context() if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    assert settings.kafka_sasl_password is not None  # checked by Settings
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    # Keys and values are JSON (key_type str, no value type: Faust picks json for both).
    def table(name: str, **extra: Any) -> faust.Table:
        return app.Table(
            name, default=None, key_type=str, partitions=settings.topic_partitions, **extra,
        )

    def marks_table(name: str, **extra: Any) -> faust.Table:  # what app.Table does, our class
        return app.tables.add(MarksTable(
            app, name=name, default=None, key_type=str, partitions=settings.topic_partitions,
            beacon=app.tables.beacon, **extra))

    ttl_ms = settings.dedupe_ttl_s * 1000
    state_ttl_ms = settings.review_state_ttl_s * 1000
    return Tables(
        # RocksDB's TTL expires local entries; compact+delete with retention bounds the
        # changelog, so a week of event ids never grows without limit.
        # One changelog record per batch of marks (streams.faust point 6).
        dedupe=marks_table(DEDUPE, options={"ttl": settings.dedupe_ttl_s},
                     extra_topic_configs={"cleanup.policy": "compact,delete",
                                          "retention.ms": str(ttl_ms)}),
        panes=table(PANES),
        # Bounded as the dedupe table is: a review's state is kept review_state_ttl_s.
        # One changelog record per batch of states, as for the marks (streams.faust.BoundBundle).
        review_states=marks_table(REVIEW_STATES, options={"ttl": settings.review_state_ttl_s},
                                  extra_topic_configs={"cleanup.policy": "compact,delete",
                                                       "retention.ms": str(state_ttl_ms)}),
        closures=table(CLOSURES),
        daily_cost=table(DAILY_COST),
        # Same partitioning as the rest (written in the restaurant's partition); global:
        # every worker reads every partition, so any worker's web view can list all.
        # synchronize_all_active_partitions: without it a GlobalTable only holds what this
        # worker wrote (faust-streaming #283), measured with two workers.
        latest=app.GlobalTable(LATEST, default=None, key_type=str,
                               partitions=settings.topic_partitions,
                               synchronize_all_active_partitions=True),
    )


async def _before_first_start(app: ReviewPulseApp) -> None:
    """Every topic we use exists before the consumer subscribes (streams.admin)."""
    await admin.ensure_topics(app)
    app.readiness.topics_ensured = True


def create_app(settings: Settings) -> ReviewPulseApp:
    advertised = settings.web_advertised_url or f"http://{settings.web_host}:{settings.web_port}"
    app = ReviewPulseApp(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap_servers),
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_request_timeout=max(90.0, settings.broker_session_timeout_s + 30.0),
        producer_linger=settings.producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest",
        stream_publish_on_commit=False,
        table_standby_replicas=settings.table_standby_replicas,
        web_enabled=True,
        web_tables_enabled=False,  # Faust's /table/... would serve raw state without our auth
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=advertised,
        value_serializer="raw",
        key_serializer="raw",
        autodiscover=["agents", "tables"],
        origin="streams.app",
        loghandlers=[],
    )
    app.fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms
    app.tansu = settings.broker_flavor is BrokerFlavor.TANSU
    app.settings = settings
    app.topics_ = declare_topics(app, app_id=settings.app_id, partitions=settings.topic_partitions)
    app.tables_ = declare_tables(app, settings)
    app.readiness = Readiness(app)
    app.before_first_start = _before_first_start
    app.health = Health(app, commit_stuck_s=settings.commit_stuck_s)
    if settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE:
        # Built here, not by the runtime: recovery of the first assignment (which may come
        # before the runtime service starts) fences through it (streams/faust/, point 12).
        auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
        app.stage_transactions = StageTransactions(
            producer_config={"bootstrap_servers": settings.kafka_bootstrap_servers,
                             "linger_ms": settings.producer_linger_ms, **auth},
            app_id=settings.app_id, group_id=app.conf.id,
            input_topic=app.topics_.by_restaurant.get_topic_name(),
            timeout_ms=int(settings.transaction_timeout_s * 1000))
    return app


settings = load_settings()
app = create_app(settings)
runtime: Runtime = install(app)
