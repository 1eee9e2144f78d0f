"""The worker creates its tables' changelogs before it joins, exactly as Faust would have
(streams/admin.py): a changelog Faust created only at the join could be missing from the
group leader's metadata on Kafka, and the worker then never got its partitions."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import Transport
from mode.utils.times import want_seconds

from streams.admin import changelog_topics
from streams.app import app


def test_every_table_changelog_is_created_with_the_configuration_faust_gives_it() -> None:
    def faust_topic_config(*args: object) -> dict[str, object]:
        return dict(Transport._topic_config(None, *args))  # the method uses nothing of its instance

    topics = changelog_topics(app)
    expected_names = {name for table in app.tables.values() for name in table.changelog_topic.topics}
    assert set(topics) == expected_names and len(topics) == len(app.tables)
    for table in app.tables.values():
        faust_topic = table.changelog_topic
        ours = topics[faust_topic.get_topic_name()]
        retention = int(want_seconds(faust_topic.retention) * 1000) if faust_topic.retention else None
        faust_config = faust_topic_config(retention, faust_topic.compacting, faust_topic.deleting)
        faust_config.update(faust_topic.config or {})
        assert ours.topic_configs == {k: str(v) for k, v in faust_config.items()}, faust_topic
        assert ours.num_partitions == (faust_topic.partitions or app.conf.topic_partitions)
        assert ours.topic_configs["cleanup.policy"].startswith("compact")  # restore reads the last value
