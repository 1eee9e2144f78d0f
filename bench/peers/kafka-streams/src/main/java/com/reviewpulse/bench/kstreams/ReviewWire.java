package com.reviewpulse.bench.kstreams;

import java.io.IOException;
import java.nio.ByteBuffer;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The Confluent wire format of {@code reviews.created}, read with Avro's own classes.
 *
 * <p>A value is magic byte 0, a 4-byte big-endian schema id, then Avro binary written with
 * that schema (schema_registry/serde.py is the Python side). Confluent's deserializer and
 * registry client are not on Maven Central, so the writer schema is the committed
 * {@code avro_schemas/ReviewCreated.avsc}, passed by path, not fetched by id: the first id
 * seen is taken as that schema's, and a record with another id fails the run (it was
 * written with a schema this peer does not have; misreading it would count garbage).
 */
final class ReviewWire {
    static final byte MAGIC_BYTE = 0;
    static final int HEADER_SIZE = 5;

    private ReviewWire() {
    }

    /** A read-only serde: the peer never writes a review. */
    static Serde<GenericRecord> serde(Schema writer) {
        Serializer<GenericRecord> none = (topic, review) -> {
            throw new UnsupportedOperationException("the peer only reads reviews");
        };
        return Serdes.serdeFrom(none, new Decoder(writer));
    }

    /** Framing + Avro to a {@link GenericRecord}; one instance is shared by every stream thread. */
    static final class Decoder implements Deserializer<GenericRecord> {
        private final Schema writer;
        // GenericDatumReader and BinaryDecoder keep per-read state: one of each per thread,
        // reused record after record (a new decoder per record is an allocation per event).
        private final ThreadLocal<GenericDatumReader<GenericRecord>> readers;
        private final ThreadLocal<BinaryDecoder> decoders = new ThreadLocal<>();
        private volatile int schemaId = -1;

        Decoder(Schema writer) {
            this.writer = writer;
            this.readers = ThreadLocal.withInitial(() -> new GenericDatumReader<>(writer));
        }

        @Override
        public GenericRecord deserialize(String topic, byte[] data) {
            if (data == null) {
                return null;
            }
            if (data.length < HEADER_SIZE || data[0] != MAGIC_BYTE) {
                throw new SerializationException("not a Confluent-framed value on " + topic + ": "
                        + data.length + " bytes, first byte " + (data.length > 0 ? data[0] : "none"));
            }
            int id = ByteBuffer.wrap(data, 1, 4).getInt();
            if (id != schemaId) {
                checkSchemaId(topic, id);
            }
            BinaryDecoder decoder = DecoderFactory.get()
                    .binaryDecoder(data, HEADER_SIZE, data.length - HEADER_SIZE, decoders.get());
            decoders.set(decoder);
            try {
                return readers.get().read(null, decoder);
            } catch (IOException | RuntimeException exc) {
                throw new SerializationException("Avro value on " + topic + " does not match "
                        + writer.getFullName() + " (schema id " + id + ")", exc);
            }
        }

        private synchronized void checkSchemaId(String topic, int id) {
            if (schemaId == -1) {
                schemaId = id;
            } else if (id != schemaId) {
                throw new SerializationException("schema id " + id + " on " + topic + " after id " + schemaId
                        + ": this peer reads one writer schema (the .avsc it was given) and has no registry");
            }
        }
    }

    /**
     * Event time is {@code occurred_at} ({@code timestamp-millis}: a long of epoch milliseconds;
     * the GenericDatumReader has no logical-type conversion registered, so it stays a Long).
     */
    static final class OccurredAt implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            if (!(record.value() instanceof GenericRecord review)) {
                return -1L;  // a tombstone is no review: Streams skips it and counts it as dropped
            }
            return (Long) review.get("occurred_at");
        }
    }
}
