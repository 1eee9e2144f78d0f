"""Subject name strategies, named as Confluent's serializers name them."""

from __future__ import annotations

import pytest

from schema_registry.errors import InvalidSchemaError
from schema_registry.subjects import SubjectNameStrategy, record_fullname, subject_for, topic_name

REVIEW = '{"type": "record", "name": "ReviewCreated", "namespace": "com.reviewpulse", "fields": []}'


def test_topic_name_strategy_is_topic_dash_value_or_key():
    assert topic_name("reviews.created") == "reviews.created-value"
    assert topic_name("reviews.created", is_key=True) == "reviews.created-key"
    assert subject_for("TopicNameStrategy", topic="t") == "t-value"


def test_record_strategies_use_the_full_record_name():
    assert (
        subject_for(SubjectNameStrategy.RECORD, topic="t", schema=REVIEW)
        == "com.reviewpulse.ReviewCreated"
    )
    assert (
        subject_for("TopicRecordNameStrategy", topic="t", schema=REVIEW)
        == "t-com.reviewpulse.ReviewCreated"
    )


@pytest.mark.parametrize(
    ("schema", "fullname"),
    [
        ({"type": "record", "name": "a.b.C", "namespace": "ignored", "fields": []}, "a.b.C"),
        ({"type": "enum", "name": "E", "symbols": ["X"]}, "E"),
    ],
)
def test_record_fullname_follows_avro_naming_rules(schema, fullname):
    assert record_fullname(schema) == fullname


def test_record_strategies_need_a_named_schema():
    with pytest.raises(InvalidSchemaError):
        subject_for("RecordNameStrategy", topic="t", schema='"string"')
    with pytest.raises(ValueError):
        subject_for("RecordNameStrategy", topic="t")
