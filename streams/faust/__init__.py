"""Every touch of Faust's private API, in one package (an upgrade of Faust is checked here).

By concern: :mod:`.transport` (points 1-3, 9, 10, 12: the consumer thread, fetch probes),
:mod:`.commits` (points 4, 5, 11, 12: what a commit may pass, offsets fetched again),
:mod:`.tables` (points 6-8: table reads and writes), :mod:`.app` (the app class, its
transport, the hooks around rebalances and agent errors).

The app class, the transport, the "current event" that decides a table write's partition,
and the consumer's set of unacked messages. The transport has three changes:

1. Faust hard-codes ``fetch_max_wait_ms=1500`` in its driver. At low traffic every fetch
   then waits up to 1.5 s for data, which alone puts p50 end-to-end latency near 3 s
   (DESIGN §11: p50 2.9 s at 1,500 ms, 66 ms at 100 ms). We set aiokafka's attribute on
   the freshly built consumer, before it starts and builds its fetcher from it.
2. Tansu (the embedded broker) answers ListOffsets(latest) with the *base offset of the
   last record batch* + 1, not the log end: after a 10-record batch at offsets 33-42 it
   says 34 where Kafka says 43 (measured; the fetch response's high watermark is right).
   Faust restores tables by reading changelogs up to ListOffsets' answer, so a restarted
   worker would restore part of its state, or stop with a ConsistencyError. We take the
   larger of ListOffsets and the high watermark of one fetch at that offset: on Kafka the
   two agree and the fetch costs one round trip per recovery.
3. After recovery (and whenever a fetch returns while flow is stopped) Faust seeks the
   stream partitions to their committed offsets, and aiokafka leaves a partition without
   one where it is. But records fetched during recovery were dropped (their partitions
   were paused) and that position is past them: a worker killed before its first commit
   and restarted with changelogs to restore skipped every input record fetched while it
   restored (tests/integration/test_crash_enrichment.py, 6 of 6 runs). A stream partition
   without a committed offset is rewound to its beginning instead, as
   ``auto_offset_reset="earliest"`` promises; what it replays is deduplicated downstream.
   The seek alone is not enough: a record fetched before it can still reach the stream
   first, and point 5's bookkeeping took a stream's first record for its start, so the
   commit passed everything below it (the same crash test under CPU load, 3 runs in 5:
   up to 395 reviews never enriched). It now expects offset 0 of a partition without a
   committed offset, so such a record sends the partition back to its beginning.
9. The inputs are read ``read_committed`` (aiokafka's ``isolation_level``, which Faust sets
   only for its own exactly_once): an upstream service that produces in transactions and
   aborts one must not have the aborted records counted. Their commit and abort markers
   take offsets that hold no record, which point 5 already handles (a fetch starts past
   them). On Tansu, which has no transactions, it reads the same records.
10. A partition whose last offsets are transaction markers (or aborted records) never reads
   lag 0: the stage's last offset stays below the high watermark, so its windows would wait
   for the next record, and its commit would stay at the marker. When a partition's stage
   stalls short of the high watermark, :func:`holds_no_record` asks the broker (one
   read_committed fetch from a group-less consumer) whether the offsets between hold any
   record; when none, :meth:`Consumer.settle_empty` acks them and the stream expects the
   high watermark next (agents/ticks.py).

The consumer has two changes (points 4 and 5), both under Faust's ack lock (point 11).

4. Faust commits a partition up to the first gap in
its acked offsets, but it can commit past an offset that was never acked, at the head:

- its head check compares the lowest acked offset with the committed offset as if the
  latter were the last offset processed; Kafka's committed offset is the *next* one, so an
  unacked offset right at the committed position is skipped (committed 250, 250 owed,
  251 acked: Faust commits 252);
- with no committed offset known the check is skipped: on a partition never committed,
  and while a rebalance revokes partitions (Faust forgets their offsets first, then waits
  for the in-flight events, whose acks it commits);
- a gap of never-delivered offsets is recorded including the delivered offset after it,
  and after a seek one short (point 5).

The restaurant stage leaves a review's offset unacked until its enrichment is durable, so
with a slow LLM the head of a partition is often owed: a kill after such a commit lost the
review, and in a two-worker group every takeover could (the survivor's revoke committed
past the reviews it abandoned). :class:`Consumer` commits from the committed offset at
assignment, never past an unacked one (:func:`commit_position`), and commits nothing for a
partition being revoked.

5. Around a rebalance, records reach Faust's fetch loop but never its streams: a stream
   skips a message fetched in the previous generation, and the fetch loop drops a record
   below the partition's read offset, which a batch fetched before the seek to the
   committed offset has already moved past. In a two-worker takeover the survivor never
   handled 7 reviews in a row (by-restaurant 241-248, 1 run in 3) and Faust's gap
   bookkeeping then committed past them. :class:`Deliveries` follows the offsets each
   stream gets; when a stream misses some, the partition is sought back to the first one
   missed (and the fetch loop told not to drop it, :class:`_ReadOffsets`). The seek runs on
   the consumer thread's loop (:func:`seek_on_thread`): aiokafka is not thread-safe, and a
   seek made from the worker's thread was overwritten by a batch of the partition being
   handed out, so the stream waited for ever (issue 29's takeover stall). The fetch again
   begins with the first offset that thread fetches after the seek (it reports it,
   :meth:`ConsumerThread.refetching`); every record before that in the stream came from
   before the seek, even one whose offset repeats (after a rebalance Faust seeks to the
   commit twice and passes both copies: a repeated offset taken for the start once
   committed 171 offsets as empty). A fetch not begun 5 s after its seek is asked for
   again. What is fetched twice is deduplicated downstream. Offsets that hold no record
   (compaction, transaction markers) are found by the same fetch: it starts past them.

6. A Faust table sends one changelog record per key written. The dedupe table gets a key
   per event, so its changelog alone was one record per input record (in a0's profile, 5.6%
   of the worker's CPU went to writing marks). :class:`BoundMarks` writes a batch's marks
   to the local store one by one and to the changelog as *one* record;
   :class:`MarksTable` expands that record again wherever a changelog is applied
   (recovery, standby replicas).

7. A Faust table write goes through ``send_soon``: a FutureMessage, the producer buffer,
   ``Topic.publish_message`` and a callback that writes the partition's persisted offset to
   RocksDB, all per record. The stage writes a pane and a day's cost entry per restaurant
   per batch (1.1 records per event in a0, 2 in phase b), and that path was ~16% of a0's
   profile. :class:`BatchedTable` writes the local store at once and sends the batch's
   changelog records straight to the producer (:meth:`BatchedTable.publish`), each record's
   offset persisted once it is acknowledged, as Faust does: the same records, keys and
   partitions, so recovery and standbys read them as before.

8. A table read through Faust's layers costs 12 µs for a typical pane on RocksDB (the
   table's mapping, the store, the serializer registry, and a walk of every decoded value
   looking for Faust model markers), of which the database lookup and JSON decoding are
   ~3 µs (``python -m bench.table_access``). The stage reads and writes its tables a few
   times per event, and writes a mark per event. :class:`BoundTable` goes straight to
   the partition's RocksDB database, with the store's own JSON codec, when the store is
   the one Faust opens for a non-global JSON table (:func:`direct_db`); the bytes are the
   ones Faust writes and reads (tests/unit/streams/test_streams_direct_tables.py). Our
   values are plain JSON, never Faust models, so nothing is lost by not reconstructing
   them; Faust's table sensors (keys retrieved and updated) no longer count these calls.
   A batch's marks (:class:`BoundMarks`) and its panes, closures and daily costs
   (:meth:`BatchedTable.update`) go in one RocksDB write per table, not one write each.

11. Faust's ``Consumer.ack`` changes ``_acked``, ``_acked_index`` and ``_unacked_messages``
   under ``faust.types.tuples.ack_lock`` (a module-level ``RLock``: ``Event.ack`` may be called
   from another thread, which is public API). Every change this module makes to those
   structures (:meth:`Consumer.on_delivered`, :meth:`Consumer.settle_empty`,
   :meth:`Consumer._new_offset`, :func:`release`, the abandoning in
   ``ReviewPulseApp._consumer_wait_empty``) takes the same lock, so an ack from another thread
   can never land between our sort and trim of a partition's acked offsets (a lost ack there
   is a commit that stops, or one that passes an offset: silent, not a crash).

12. Under ``REVIEWPULSE_PROCESSING_GUARANTEE=exactly_once`` (streams.transactions,
   docs/exactly-once.md) the changelogs are written in transactions, so each partition ends
   with a commit marker, an offset no reader gets; Faust's recovery waits until it has
   applied the offset before the high watermark, and allows for markers only under its own
   exactly_once (``Recovery.detect_aborted_tx``). :meth:`ConsumerThread._highwaters` answers,
   for changelogs, one past the last record a read_committed reader gets there, after the
   worker has taken the partitions' transactional ids (which fences their earlier owner and
   aborts its open transaction, so nothing commits past what it read). Without it every
   restart under exactly-once waited forever ("Still fetching changelog topics for
   recovery ... total remaining=20": one marker for each of 5 tables and 4 partitions).
   :meth:`Consumer._new_offset` answers nothing for the stage's input, whose offsets go in
   those transactions: a commit of Faust's could pass a batch whose transaction aborts.

Upgrading Faust or aiokafka: both are pinned to the versions this was written against
(pyproject.toml). ``tests/unit/streams/test_faust_private_api.py`` records every private name
and overridden method used here, with its signature, and what the libraries' own code must
still do for each change above to take effect; it fails naming the one that moved. If the
new Faust no longer takes ``ack_lock`` in ``Consumer.ack``, find what guards the ack
bookkeeping now and take that here instead (point 11).
"""
