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

from streams.faust_internals import ReviewPulseApp
from streams.health import Health
from streams.readiness import Readiness
from streams.runtime import Runtime, install
from streams.settings import BrokerFlavor, Settings, load_settings
from streams.topics import declare_topics
from tables.state import declare_tables


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
    app.health = Health(app, commit_stuck_s=settings.commit_stuck_s)
    return app


settings = load_settings()
app = create_app(settings)
runtime: Runtime = install(app)
