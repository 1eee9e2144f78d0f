"""The one Settings object: every knob of ReviewPulse, read from ``REVIEWPULSE_*`` variables.

No other module reads ``os.environ``. Faust's own variables (``BROKER_URL``, ``WEB_PORT``,
``APP_STORE``...) are never consulted: the app passes explicit values built from here.
Every field is documented in the README's settings table (a test keeps it complete).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ReviewPulseError
from streams.sources import parse_source_budgets

MICRO = 1_000_000
MIB = 1024 * 1024
# Faust commits every 2.8 s (broker_commit_interval), and ticks keep records waiting on every
# by-restaurant partition: a healthy commit can stand for one interval plus a tick interval.
COMMIT_STUCK_MIN_S = 10.0


class SettingsError(ReviewPulseError):
    """Invalid configuration; the message lists every problem at once."""


class ProcessingGuarantee(StrEnum):
    """What a downstream consumer reading ``read_committed`` may see of the stage's outputs."""

    AT_LEAST_ONCE = "at_least_once"  # ids to upsert on; reviews.enriched may repeat after a kill
    EXACTLY_ONCE = "exactly_once"  # Kafka transactions per batch and partition (docs/exactly-once.md)


class FailurePolicy(StrEnum):
    """What happens to a review whose LLM call failed transiently."""

    RETRY_THEN_FALLBACK = "retry_then_fallback"  # reviews.retry up to llm_max_attempts
    FALLBACK_NOW = "fallback_now"  # heuristic at once, no redelivery


class BrokerFlavor(StrEnum):
    """Which broker the worker talks to; only Tansu's workarounds depend on it."""

    KAFKA = "kafka"  # Apache Kafka, or a service with its semantics (Confluent Cloud, MSK, Strimzi)
    TANSU = "tansu"  # the embedded dev broker: memory only, no transactions, a wrong ListOffsets


class Settings(BaseSettings):
    """ReviewPulse configuration. Units are in the names; money is in USD only at the edge."""

    model_config = SettingsConfigDict(env_prefix="REVIEWPULSE_", extra="ignore", frozen=True)

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated host:port.")
    kafka_security_protocol: str = Field("PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str = Field("PLAIN", description="SASL mechanism when a SASL protocol is used (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    app_id: str = Field("reviewpulse", min_length=1, description="Consumer group and prefix of internal topics. Changing it drops all table state.")
    topic_partitions: int = Field(4, ge=1, le=1024, description="Partitions of the topics ReviewPulse creates (repartition, changelogs, outputs).")
    topic_replication_factor: int = Field(1, ge=1, le=7, description="Replication factor of the topics ReviewPulse creates (3 in production).")
    broker_flavor: BrokerFlavor = Field(BrokerFlavor.KAFKA, description="kafka (Apache Kafka and services with its semantics) or tansu (the embedded dev broker: turns on its workarounds, never use it in production; the embedded stack sets it).")
    broker_session_timeout_s: float = Field(60.0, gt=0, description="Consumer group session timeout; a first join on Tansu takes about half of it (the embedded stack and demo use 6 s).")
    broker_heartbeat_interval_s: float = Field(3.0, gt=0, description="Consumer heartbeat interval; must be well under the session timeout.")
    consumer_fetch_max_wait_ms: int = Field(100, ge=1, le=10_000, description="Longest a fetch waits for data (Faust hard-codes 1,500 ms; see DESIGN §11).")
    producer_linger_ms: int = Field(1, ge=0, le=1_000, description="Producer linger: small values trade batching for latency.")

    # --- Schema Registry ---------------------------------------------------------------------
    schema_registry_url: str = Field("http://127.0.0.1:8081", description="Confluent-compatible Schema Registry URL.")
    schema_registry_username: str | None = Field(None, description="Registry basic-auth user.")
    schema_registry_password: SecretStr | None = Field(None, description="Registry basic-auth password (secret).")
    schema_registry_ca_file: Path | None = Field(None, description="CA bundle to verify the registry's TLS certificate.")
    schema_auto_register: bool = Field(True, description="Register output schemas at start-up (false: only look them up; production with CI-registered schemas).")

    # --- LLM ---------------------------------------------------------------------------------
    llm_base_url: str = Field("http://127.0.0.1:8090/v1", description="OpenAI-compatible API base URL (…/v1).")
    llm_model: str = Field("reviewpulse-sim-1", min_length=1, description="Model name sent to the API and recorded on every enrichment.")
    llm_api_key: SecretStr | None = Field(None, description="API key (secret). Prefer _FILE in deployments.")
    llm_api_key_file: Path | None = Field(None, description="File holding the API key (read at start-up, stripped).")
    llm_timeout_s: float = Field(12.0, gt=0, description="Per-request timeout (seed 000: 12 s).")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Retries inside one call (backoff with jitter, Retry-After honoured).")
    llm_backoff_base_s: float = Field(0.2, gt=0, description="First backoff delay; doubles per retry, full jitter.")
    llm_backoff_max_s: float = Field(5.0, gt=0, description="Cap of one backoff delay.")
    llm_batch_size: int = Field(10, ge=1, le=100, description="Reviews per LLM request (seed 000: 10).")
    llm_batch_linger_ms: int = Field(50, ge=0, le=5_000, description="Longest an idle LLM worker waits for its batch to fill before calling with fewer reviews (batching is what shares the prompt's tokens).")
    llm_concurrency: int = Field(8, ge=1, le=256, description="LLM requests in flight per worker.")
    llm_json_schema_output: bool = Field(True, description="Ask for response_format json_schema (false: json_object + instructions).")
    llm_price_in_usd_per_mtok: float = Field(0.15, ge=0, description="Price of one million prompt tokens, USD.")
    llm_price_out_usd_per_mtok: float = Field(0.60, ge=0, description="Price of one million completion tokens, USD.")
    llm_failure_policy: FailurePolicy = Field(FailurePolicy.RETRY_THEN_FALLBACK, description="retry_then_fallback: redeliver through reviews.retry, then heuristic FALLBACK + DLQ llm_exhausted; fallback_now: heuristic at once.")
    llm_max_attempts: int = Field(3, ge=1, le=20, description="Enrichment attempts through reviews.retry before falling back; also caps a worker's tries at one review's enrichment call or emission when it raises (each may be a paid call), after which the review gets FALLBACK and DLQ llm_exhausted (once under fallback_now).")
    llm_retry_delay_s: float = Field(5.0, ge=0, description="Delay before a redelivery from reviews.retry; doubles per attempt.")
    breaker_failure_threshold: int = Field(5, ge=1, description="Consecutive failed calls that open the circuit breaker.")
    breaker_reset_timeout_s: float = Field(30.0, gt=0, description="How long the breaker stays open before a half-open probe.")
    token_budget_per_minute: int = Field(500_000, ge=1, description="LLM tokens per minute for the whole consumer group; each worker enforces its share (by-restaurant partitions owned / all), over it reviews are BUDGET_SKIPPED (global_token_budget).")
    source_token_budgets: str = Field("", description="Token quotas per minute per upstream service (metadata.source) for the whole group, e.g. api.review=400000,batch.import=50000,*=100000; * is shared by every source not listed (and by empty or malformed ones). Over its quota a source's reviews are BUDGET_SKIPPED (source_quota); empty: no quotas.")
    restaurant_daily_cost_cap_usd: float = Field(1.0, ge=0, description="LLM spend cap per restaurant per UTC day; over it BUDGET_SKIPPED + one budget_exceeded alert (CRITICAL).")
    budget_warning_share: float = Field(0.8, gt=0, le=1, description="Share of a budget at which a WARNING goes out: a restaurant's daily cap (budget_warning on restaurants.alerts, once per restaurant and UTC day), a source's quota and the global token budget (budget.alerts, at most once a minute per worker and budget).")
    enrich_max_pending: int = Field(20_000, ge=1, description="Reviews queued or in flight for enrichment per worker (their offsets stay uncommitted); beyond it new reviews get the heuristic at once (FALLBACK, counted in reviewpulse_enrichment_shed).")
    pane_max_pending: int = Field(1_000, ge=1, le=100_000, description="Reviews one restaurant's pane may owe their enrichment (each is an entry of the pane record, written whole per batch); beyond it a review gets the heuristic at once (FALLBACK, counted in reviewpulse_enrichment_shed). Lowered so that a pane of the longest ids stays under 512 KiB.")
    enrich_max_unjoined: int = Field(500, ge=1, description="Reviews per worker whose enrichment was sent but has not yet joined its pane durably; past it the LLM workers wait before sending more. After a kill -9 these are the reviews that can be enriched twice, so this bounds the repeats on reviews.enriched.")
    cache_size: int = Field(20_000, ge=0, description="Entries in the enrichment result cache (0 disables it).")

    # --- Memory bounds (issue 30, finding 9): each part has its own, the chart sums them -----
    enrich_backlog_max_bytes: int = Field(256 * MIB, ge=MIB, description="Bytes of the reviews queued or in flight for enrichment per worker (each counted from its by-restaurant record, original bytes and decoded text); beyond it new reviews get the heuristic at once (FALLBACK, counted in reviewpulse_enrichment_shed and reviewpulse_memory_evicted_total, part enrich_backlog).")
    cache_max_bytes: int = Field(32 * MIB, ge=64 * 1024, description="Bytes of the enrichment result cache; past it the least recently used answers go (a later identical review pays the LLM again).")
    history_max_range_s: int = Field(8 * 24 * 3600, ge=60, description="Widest range /api/restaurants/{id}/windows?from=&to= reads back from restaurants.aggregates (a wider one gets 400 naming this limit).")
    web_history_max_bytes: int = Field(64 * MIB, ge=64 * 1024, description="Bytes of the closed-window history the web view charts (every restaurant's windows, kept as compact JSON); past it the oldest windows of all go first.")
    web_recent_max_bytes: int = Field(32 * MIB, ge=64 * 1024, description="Bytes of the recent critical reviews and alerts the web view shows; past it the oldest go first.")
    schema_cache_max_bytes: int = Field(16 * MIB, ge=MIB, description="Bytes of the writer schemas cached by id (text and parsed form); past it the least recently used are fetched from the registry again when next needed.")

    # --- Pipeline ----------------------------------------------------------------------------
    text_max_chars: int = Field(5_000, ge=1, description="Longest review text accepted; longer goes to the DLQ (text_too_long).")
    id_max_chars: int = Field(128, ge=8, le=4096, description="Longest id accepted (event, review, user, restaurant, order, trace); longer goes to the DLQ (invalid_id).")
    language_max_chars: int = Field(35, ge=2, le=256, description="Longest entity.language accepted (RFC 5646 §4.4.1: 35 characters hold any tag an implementation must keep); longer goes to the DLQ (field_too_long).")
    source_max_chars: int = Field(128, ge=1, le=4096, description="Longest metadata.source accepted (a producing service's name); longer goes to the DLQ (field_too_long).")
    max_input_record_bytes: int = Field(128 * 1024, ge=1024, le=600_000, description="Largest input record accepted, key, value and headers together; larger goes to the DLQ (record_too_large). Its by-restaurant copy is about 2.3 times (at worst 7.3 times) its size and must stay under the producer's 1,000,000-byte request limit.")
    event_time_max_skew_s: float = Field(300.0, ge=0, description="How far occurred_at may lie ahead of the decoding clock; further goes to the DLQ (event_time_in_future).")
    event_time_max_age_s: float = Field(7 * 24 * 3600.0, gt=0, description="How old occurred_at may be; older goes to the DLQ (event_time_too_old). Keep it at most dedupe_ttl_s.")
    dedupe_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="How long an event_id is remembered for deduplication.")
    processing_guarantee: ProcessingGuarantee = Field(ProcessingGuarantee.AT_LEAST_ONCE, description="at_least_once: every output carries an id to upsert on, and reviews.enriched may repeat a review answered but not joined at a kill; exactly_once: the restaurant stage's outputs, state and input offsets are committed in one Kafka transaction per batch and partition, so read_committed consumers see each once (Kafka only; refused on Tansu).")
    transaction_timeout_s: float = Field(30.0, ge=1, le=900, description="Kafka's transaction.timeout.ms under exactly_once: how long a killed worker's open transaction holds read_committed readers back when no new owner fences it sooner.")
    review_states: bool = Field(True, description="Keep each review's enrichment state (PENDING, PROCESSING, final) for GET /api/restaurants/{id}/reviews/{review_id}; off saves a table write and changelog record per review state.")
    review_state_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="How long a review's enrichment state is kept after it was first seen (RocksDB TTL and its changelog's retention).")
    take_max_events: int = Field(1_000, ge=1, description="Most events one agent batch holds (stream.take).")
    take_within_s: float = Field(0.05, gt=0, description="Longest an agent waits to fill a batch.")
    table_standby_replicas: int = Field(1, ge=0, le=8, description="Standby copies of each table partition kept warm on other workers (faster failover); each one costs its worker the CPU of applying every changelog record of the partition.")

    # --- Windows -----------------------------------------------------------------------------
    window_size_s: int = Field(60, ge=1, description="Tumbling window size.")
    hopping_size_s: int = Field(900, ge=1, description="Hopping window size (alert rules).")
    hopping_step_s: int = Field(60, ge=1, description="Hopping window step.")
    window_grace_s: int = Field(10, ge=0, description="How late an event may arrive and still count in its window.")
    state_retention_s: float = Field(8 * 24 * 3600.0, gt=0, description="How long a restaurant's closed-window record, daily cost entries and latest aggregate are kept after its last pane is collected; at least event_time_max_age_s plus the hopping size (older events are refused at decode, so none can reopen a window).")
    window_close_interval_s: float = Field(1.0, gt=0, description="Wall-clock closing timer: closes windows of quiet restaurants.")

    # --- Alert rules -------------------------------------------------------------------------
    alert_negative_share: float = Field(0.4, gt=0, le=1, description="negative_share fires when NEGATIVE+CRITICAL share of the hopping window exceeds this.")
    alert_negative_min_reviews: int = Field(5, ge=1, description="…with at least this many reviews in the hopping window.")
    alert_sentiment_drop: float = Field(0.5, gt=0, le=2, description="sentiment_drop fires when the tumbling average falls by more than this against the previous window.")
    alert_sentiment_min_reviews: int = Field(3, ge=1, description="Reviews each of the two windows needs before sentiment_drop is judged.")
    alert_window_cost_usd: float = Field(0.5, ge=0, description="window_cost fires when one tumbling window's LLM cost exceeds this.")
    processing_lag_slo_s: float = Field(8.0, gt=0, description="processing_lag fires (WARNING) when the window p95 exceeds this (seed 000: 8 s).")
    processing_lag_critical_s: float = Field(30.0, gt=0, description="…and is CRITICAL above this (seed 000: 30 s).")
    delivery_delay_slo_s: float = Field(600.0, gt=0, description="delivery_delay fires when the window p95 delivery delay exceeds this.")

    # --- Health ------------------------------------------------------------------------------
    # 300 s: comfortably above the longest pin a healthy worker holds with the defaults. A
    # review's call takes at most llm_timeout_s x (llm_max_retries + 1) plus two backoffs
    # (12 x 3 + 5 x 2 = 46 s), tried llm_max_attempts (3) times: about 140 s; a retry record
    # waits llm_retry_delay_s x 2^(attempts - 1) = 20 s; windows hold no offsets.
    commit_stuck_s: float = Field(300.0, ge=0, description="/health fails (503, commit_stuck) when the committed offset of a partition the worker reads has not moved for this long while records wait behind it; 0 turns the check off. Keep it above the longest an owed review may pin the commit: llm_timeout_s x (llm_max_retries + 1) x llm_max_attempts plus backoffs, about 140 s with the defaults.")

    # --- Web, storage, logs ------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="Address the web view and /metrics bind to (0.0.0.0 in a container).")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the web view and /metrics.")
    web_advertised_url: str | None = Field(None, description="URL other workers use to reach this one (table routing); default http://web_host:web_port.")
    web_auth_token: SecretStr | None = Field(None, description="Bearer token the web view requires when set (secret). /health, /ready and /metrics stay open.")
    data_dir: Path = Field(Path("./data"), description="RocksDB table state and Faust's data directory.")
    store: str = Field("rocksdb://", pattern="^(rocksdb|memory)://$", description="Table store: rocksdb:// (default) or memory:// (tests).")
    log_level: str = Field("info", pattern="^(debug|info|warn|error|crit)$", description="debug, info, warn, error or crit.")

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        problems = []
        if self.hopping_size_s % self.hopping_step_s:
            problems.append("hopping_size_s must be a multiple of hopping_step_s")
        if self.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE and self.broker_flavor is BrokerFlavor.TANSU:
            problems.append("processing_guarantee exactly_once needs Kafka transactions, and Tansu has none "
                            "(broker_flavor tansu): use at_least_once, or Apache Kafka")
        if self.broker_heartbeat_interval_s * 3 > self.broker_session_timeout_s:
            problems.append("broker_heartbeat_interval_s must be at most a third of broker_session_timeout_s")
        if self.processing_lag_critical_s < self.processing_lag_slo_s:
            problems.append("processing_lag_critical_s must be >= processing_lag_slo_s")
        if self.state_retention_s < self.event_time_max_age_s + self.hopping_size_s + self.window_grace_s:
            problems.append("state_retention_s must be at least event_time_max_age_s + hopping_size_s + window_grace_s")
        if self.event_time_max_age_s > self.dedupe_ttl_s:
            problems.append("event_time_max_age_s must be at most dedupe_ttl_s (an older replay could be counted twice)")
        if 0 < self.commit_stuck_s < COMMIT_STUCK_MIN_S:
            problems.append(f"commit_stuck_s must be 0 (off) or at least {COMMIT_STUCK_MIN_S:g} s: a healthy commit moves only every few seconds")
        try:
            parse_source_budgets(self.source_token_budgets)
        except ValueError as exc:
            problems.append(f"source_token_budgets: {exc}")
        if self.llm_backoff_max_s < self.llm_backoff_base_s:
            problems.append("llm_backoff_max_s must be >= llm_backoff_base_s")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            problems.append("SASL protocols need kafka_sasl_username and kafka_sasl_password")
        if self.llm_api_key_file is not None and not self.llm_api_key_file.is_file():
            problems.append(f"llm_api_key_file {self.llm_api_key_file} is not a readable file")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived values (one place, so no caller re-derives them) ----------------------------
    @property
    def pane_size_s(self) -> int:
        """State is kept in panes; tumbling and hopping windows are unions of panes."""
        from math import gcd

        return gcd(self.window_size_s, self.hopping_step_s)

    @property
    def restaurant_daily_cost_cap_micro_usd(self) -> int:
        return round(self.restaurant_daily_cost_cap_usd * MICRO)

    @property
    def source_token_budget_map(self) -> dict[str, int]:
        return parse_source_budgets(self.source_token_budgets)

    @property
    def alert_window_cost_micro_usd(self) -> int:
        return round(self.alert_window_cost_usd * MICRO)

    def llm_api_key_value(self) -> SecretStr | None:
        """The API key from the variable or, when set, from the file; still a SecretStr."""
        if self.llm_api_key_file is not None:
            return SecretStr(self.llm_api_key_file.read_text().strip())
        return self.llm_api_key


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; one SettingsError lists every problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"REVIEWPULSE_{where.upper()}" if err["loc"] else where
            lines.append(f"  - {name}: {err['msg']}")
        raise SettingsError("invalid ReviewPulse settings:\n" + "\n".join(lines)) from None
