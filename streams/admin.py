"""Every topic the worker reads or writes exists before its consumer subscribes.

Faust creates its changelogs and the internal topics it consumes, but only once the group
has assigned them, and never the inputs other services own. A consumer that subscribes
to a topic that does not exist yet sees "Subscribed topic not available" and librdkafka
looks again only every ``topic.metadata.refresh.interval.ms`` (5 minutes); and on Tansu a
topic auto-created by the first produce or metadata request can lose records. So the
worker lists the cluster's topics when it first starts, before any child service, and
creates the missing ones with the configured partitions and replication factor. Existing
topics are left exactly as they are (another team may own an input with its own
partitioning). The tables' changelogs are created here too, with the configuration Faust
gives them (:func:`changelog_topics`): Faust creates them only just before the consumer
joins, and on Kafka a topic created that late can be missing from the group leader's
metadata; the leader then assigned without it and the worker never got its partitions
(seen once in a CI run: the join's last log line was "Ignoring missing topic").

The listing asks for *all* topics: a metadata request naming a missing topic is what
auto-creates it on brokers that allow that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from mode.utils.times import want_seconds

from streams.errors import ReviewPulseError

if TYPE_CHECKING:
    from streams.faust.app import ReviewPulseApp
    from streams.settings import Settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36  # Kafka error code: a race with another worker creating it too
# Long enough for a broker that is still starting (Tansu answers in < 1 s), short enough
# that a worker pointed at a wrong address fails with a message instead of hanging.
ENSURE_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1  # re-list until the broker's metadata shows every created topic


class TopicSetupError(ReviewPulseError):
    """A topic the worker needs is absent and could not be created (ACLs, broker refused)."""


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()],
        "client_id": f"{settings.app_id}-admin",
        "security_protocol": protocol,
    }
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = ssl.create_default_context()
    if protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        kwargs |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return AIOKafkaAdminClient(**kwargs)


def topic_names(app: ReviewPulseApp) -> list[str]:
    """Inputs, outputs, retry and repartition topics: every declared topic but changelogs."""
    names = [getattr(app.topics_, f.name).get_topic_name() for f in dataclasses.fields(app.topics_)]
    return sorted(set(names))


def changelog_topics(app: ReviewPulseApp) -> dict[str, NewTopic]:
    """Every table's changelog as Faust would create it: its cleanup policy, retention and
    extra configuration (``faust.transport.drivers.aiokafka``'s ``_topic_config``)."""
    settings = app.settings
    out: dict[str, NewTopic] = {}
    for table in app.tables.values():
        topic = table.changelog_topic
        flags = [flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        config: dict[str, str] = {"cleanup.policy": ",".join(flags)} if flags else {}
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config.update({k: str(v) for k, v in (topic.config or {}).items()})
        for name in topic.topics:
            out[name] = NewTopic(name, topic.partitions or settings.topic_partitions,
                                 topic.replicas or settings.topic_replication_factor, topic_configs=config)
    return out


async def ensure_topics(app: ReviewPulseApp) -> list[str]:
    """Create the missing topics of ``app`` and wait until the broker lists them; return those created."""
    settings = app.settings
    changelogs = changelog_topics(app)
    names = sorted({*topic_names(app), *changelogs})
    admin = _admin(settings)
    try:
        async with asyncio.timeout(ENSURE_TIMEOUT_S):
            await admin.start()
            missing = sorted(set(names) - set(await admin.list_topics()))
            if missing:
                await _create(admin, [changelogs.get(name) or NewTopic(
                    name, settings.topic_partitions, settings.topic_replication_factor) for name in missing])
                while set(missing) - set(await admin.list_topics()):
                    await asyncio.sleep(POLL_INTERVAL_S)
    except TimeoutError as exc:
        raise TopicSetupError(
            f"topics {names} not confirmed by {settings.kafka_bootstrap_servers} "
            f"within {ENSURE_TIMEOUT_S:.0f} s"
        ) from exc
    finally:
        await admin.close()
    if missing:
        log.info("created topics", extra={"topics": missing, "partitions": settings.topic_partitions})
    return missing


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    started = time.monotonic()
    response = await admin.create_topics(topics)
    refused = {
        entry[0]: f"error {entry[1]}" + (f": {entry[2]}" if len(entry) > 2 and entry[2] else "")
        for entry in response.topic_errors
        if entry[1] not in (0, TOPIC_ALREADY_EXISTS)
    }
    if refused:
        raise TopicSetupError(f"the broker refused to create {refused}; create them, or grant CREATE")
    log.debug("create_topics answered", extra={"s": round(time.monotonic() - started, 3)})
