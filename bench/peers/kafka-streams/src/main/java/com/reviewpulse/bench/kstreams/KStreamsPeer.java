package com.reviewpulse.bench.kstreams;

import java.io.File;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams peer of the bench: a tumbling count per restaurant, final results only.
 *
 * <p>Reads Confluent-framed Avro reviews ({@link ReviewWire}), takes event time from
 * {@code occurred_at}, re-keys by {@code entity.restaurant_id} through one repartition topic,
 * counts per tumbling window and emits each window once, when it closes
 * ({@code suppress(untilWindowCloses)}), as {@code "restaurant|window_start_ms" -> count} on
 * the output topic. It stops once {@code --expected} records have reached the count (or at
 * {@code --timeout-s}) and prints one JSON line on stdout: the events, wall seconds from the
 * first to the last, events/s, and process CPU seconds over the same span
 * ({@code OperatingSystemMXBean.getProcessCpuTime()}). Logs go to stderr.
 */
public final class KStreamsPeer {
    // Internal topics: <application.id>-by-restaurant-repartition, -counts-changelog and
    // -until-window-closes-store-changelog (named, so they read in a topic listing).
    static final String REPARTITION_NAME = "by-restaurant";
    static final String COUNTS_STORE = "counts";
    static final String SUPPRESS_NAME = "until-window-closes";

    private KStreamsPeer() {
    }

    public static void main(String[] argv) throws Exception {
        long mainNanos = System.nanoTime();
        double mainAfterS = ManagementFactory.getRuntimeMXBean().getUptime() / 1e3;  // JVM start -> main
        Map<String, String> args = parseArgs(argv);
        String bootstrap = required(args, "bootstrap");
        String appId = args.getOrDefault("application-id", "reviewpulse-bench-kstreams");
        String input = args.getOrDefault("input-topic", "reviews.created");
        String output = args.getOrDefault("output-topic", appId + "-counts");
        Schema writer = new Schema.Parser().parse(new File(required(args, "schema")));
        long windowSizeS = Long.parseLong(args.getOrDefault("window-size-s", "60"));
        // 10 s: the product's window_grace_s default (streams/settings.py).
        long graceS = Long.parseLong(args.getOrDefault("grace-s", "10"));
        long expected = Long.parseLong(required(args, "expected"));
        long timeoutS = Long.parseLong(args.getOrDefault("timeout-s", "600"));
        Path stateDir = args.containsKey("state-dir") ? Path.of(args.get("state-dir"))
                : Files.createTempDirectory("kstreams-peer-");

        Progress progress = new Progress(expected);
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.ByteArray(), ReviewWire.serde(writer))
                        .withTimestampExtractor(new ReviewWire.OccurredAt()))
                // The value crossing the repartition topic is the rating (4 bytes), not the review:
                // a Streams user drops what the aggregation does not read before a hop instead of
                // re-encoding the record, and a windowed count ignores null values (its Javadoc).
                .map((key, review) -> {
                    GenericRecord entity = (GenericRecord) review.get("entity");
                    return KeyValue.pair(entity.get("restaurant_id").toString(), (Integer) entity.get("rating"));
                })
                // What groupByKey() after map() would insert, made explicit only to name the topic
                // and to count each record where it reaches the count (after the hop).
                .repartition(Repartitioned.with(Serdes.String(), Serdes.Integer()).withName(REPARTITION_NAME))
                .peek((restaurant, rating) -> progress.record())
                .groupByKey()
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(windowSizeS), Duration.ofSeconds(graceS)))
                .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as(COUNTS_STORE)
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded())
                        .withName(SUPPRESS_NAME))
                .toStream()
                .map((window, count) -> KeyValue.pair(window.key() + "|" + window.window().start(), count))
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);  // the product's default
        // Throughput settings, as a Kafka Streams user would leave them for a backlog:
        // commit.interval.ms 30 s is Streams' at-least-once default. Each commit flushes the
        // record caches (one changelog record and one record to suppress per dirty key) and
        // commits offsets; a shorter interval only buys fresher changelogs and earlier final
        // results, which the throughput figure does not read. A backlog of a few tens of
        // thousands of reviews may then see no commit before the last record: the JSON's
        // "commits" says how many ran, and "close_cpu_s" what the final flush cost.
        String commitIntervalMs = args.getOrDefault("commit-interval-ms", "30000");
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
        // Caches on, 10 MiB (Streams' default, set here to read as a choice): 200 restaurants x
        // a few open windows is tens of KB, so every update between commits is absorbed in the
        // cache, the way the product writes each key once per batch (STYLE habit 7).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, String.valueOf(10L * 1024 * 1024));
        // One stream thread: Faust runs one event loop, and the bench machine has 2 cores shared
        // with the broker. More are one argument away.
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.getOrDefault("threads", "1"));
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        ensureOutputTopic(bootstrap, input, output);
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        streams.setUncaughtExceptionHandler(exc -> {
            failure.compareAndSet(null, exc);
            progress.abort();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        boolean finished = progress.await(timeoutS);
        Snapshot end = progress.end(finished);
        Map<String, Double> metrics = sums(streams, Set.of("dropped-records-total", "commit-total"));
        long closeStarted = System.nanoTime();
        long cpuBeforeClose = cpuNanos();
        boolean closed = streams.close(Duration.ofSeconds(60));  // flushes caches, suppress and producer
        double closeS = (System.nanoTime() - closeStarted) / 1e9;
        double closeCpuS = (cpuNanos() - cpuBeforeClose) / 1e9;

        Snapshot first = progress.first();
        long events = progress.count();
        double wallS = first == null ? Double.NaN : (end.nanos - first.nanos) / 1e9;
        double cpuS = first == null ? Double.NaN : (end.cpuNanos - first.cpuNanos) / 1e9;
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("peer", "kafka-streams");
        out.put("events", events);
        out.put("expected", expected);
        out.put("timed_out", !finished && failure.get() == null);
        out.put("wall_s", wallS);
        out.put("events_per_s", events / wallS);  // as bench.pipeline's first -> last figures
        out.put("cpu_s", cpuS);
        out.put("cpu_us_per_event", cpuS / events * 1e6);
        out.put("steady_events_per_s", progress.steadyRate());  // 10% -> 90%, as bench.pipeline rates a0 and d
        out.put("cpu_s_total", cpuNanos() / 1e9);  // the whole process, JVM start-up included
        // JVM start -> first record at the count: start-up, group join, first fetch and hop.
        out.put("first_record_after_s", first == null ? Double.NaN : mainAfterS + (first.nanos - mainNanos) / 1e9);
        out.put("close_s", closeS);
        out.put("close_cpu_s", closeCpuS);
        out.put("closed_cleanly", closed);
        out.put("commits", metrics.get("commit-total"));
        out.put("dropped_records", metrics.get("dropped-records-total"));  // late, expired or unreadable
        out.put("commit_interval_ms", Long.parseLong(commitIntervalMs));
        out.put("window_size_s", windowSizeS);
        out.put("grace_s", graceS);
        out.put("output_topic", output);
        if (failure.get() != null) {
            out.put("error", String.valueOf(failure.get()));
        }
        System.out.println(toJson(out));
        System.out.flush();
        System.exit(failure.get() == null ? 0 : 1);
    }

    /** Wall and CPU time at one record. */
    record Snapshot(long nanos, long cpuNanos) {
        static Snapshot now() {
            return new Snapshot(System.nanoTime(), KStreamsPeer.cpuNanos());
        }
    }

    /**
     * Counts records as they reach the count; takes wall and CPU time at the first, at 10% and
     * 90% of the expected count and at the last (each milestone is one counter value, taken by
     * exactly one thread), and releases the main thread at the expected count.
     */
    static final class Progress {
        private final long expected;
        private final long tenth;
        private final long ninetieth;
        private final AtomicLong count = new AtomicLong();
        private final CountDownLatch done = new CountDownLatch(1);
        private volatile Snapshot first;
        private volatile Snapshot atTenth;
        private volatile Snapshot atNinetieth;
        private volatile Snapshot last;

        Progress(long expected) {
            this.expected = expected;
            this.tenth = Math.max(1, expected / 10);
            this.ninetieth = Math.max(1, expected * 9 / 10);
        }

        void record() {
            long n = count.incrementAndGet();
            if (n == 1) {
                first = Snapshot.now();
            }
            if (n == tenth) {
                atTenth = Snapshot.now();
            }
            if (n == ninetieth) {
                atNinetieth = Snapshot.now();
            }
            if (n == expected) {
                last = Snapshot.now();
                done.countDown();
            }
        }

        void abort() {
            done.countDown();
        }

        boolean await(long timeoutS) throws InterruptedException {
            return done.await(timeoutS, TimeUnit.SECONDS) && last != null;
        }

        /** The last record's snapshot, or now when the run stopped short (timeout or failure). */
        Snapshot end(boolean finished) {
            return finished ? last : Snapshot.now();
        }

        Snapshot first() {
            return first;
        }

        long count() {
            return count.get();
        }

        double steadyRate() {
            Snapshot a = atTenth;
            Snapshot b = atNinetieth;
            if (a == null || b == null || b.nanos <= a.nanos) {
                return Double.NaN;
            }
            return (ninetieth - tenth) / ((b.nanos - a.nanos) / 1e9);
        }
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    /** The output topic with the input's partition count, created before the app starts. */
    static void ensureOutputTopic(String bootstrap, String input, String output) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            int partitions;
            try {
                partitions = admin.describeTopics(List.of(input)).allTopicNames().get(30, TimeUnit.SECONDS)
                        .get(input).partitions().size();
            } catch (java.util.concurrent.ExecutionException exc) {
                throw new IllegalStateException("input topic " + input + " not found on " + bootstrap, exc);
            }
            try {
                admin.createTopics(List.of(new NewTopic(output, partitions, (short) 1))).all()
                        .get(30, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException exc) {
                if (!(exc.getCause() instanceof TopicExistsException)) {
                    throw exc;
                }
            }
        }
    }

    static Map<String, Double> sums(KafkaStreams streams, Set<String> names) {
        Map<String, Double> out = new HashMap<>();
        for (Map.Entry<MetricName, ? extends Metric> entry : streams.metrics().entrySet()) {
            String name = entry.getKey().name();
            if (names.contains(name) && entry.getValue().metricValue() instanceof Double value) {
                out.merge(name, value, Double::sum);
            }
        }
        return out;
    }

    static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i += 2) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("arguments are --name value pairs; got " + String.join(" ", argv));
            }
            args.put(argv[i].substring(2), argv[i + 1]);
        }
        return args;
    }

    static String required(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }

    /** A flat JSON object: numbers (NaN and infinities as null), booleans, strings. */
    static String toJson(Map<String, Object> fields) {
        StringBuilder json = new StringBuilder("{");
        for (Map.Entry<String, Object> entry : fields.entrySet()) {
            if (json.length() > 1) {
                json.append(", ");
            }
            json.append('"').append(entry.getKey()).append("\": ");
            Object value = entry.getValue();
            if (value == null || value instanceof Double d && (d.isNaN() || d.isInfinite())) {
                json.append("null");
            } else if (value instanceof Double d) {
                json.append(d);
            } else if (value instanceof Number || value instanceof Boolean) {
                json.append(value);
            } else {
                json.append('"').append(value.toString().replace("\\", "\\\\").replace("\"", "\\\"")
                        .replace("\n", "\\n")).append('"');
            }
        }
        return json.append('}').toString();
    }
}
