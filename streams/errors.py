"""The root of every error ReviewPulse raises.

Each package's ``errors.py`` subclasses :class:`ReviewPulseError`, so a caller can
catch everything of ours in one ``except`` and nothing foreign::

    ReviewPulseError
    ├── SettingsError                       (streams.settings: invalid configuration)
    ├── schema_registry.errors.SchemaRegistryError
    │   ├── RegistryHTTPError               (a registry answered with an error body)
    │   ├── SerdeError                      (bytes or values that break the wire format)
    │   │   ├── UnknownMagicByteError, TruncatedPayloadError, UnknownSchemaIdError
    │   │   └── SchemaMismatchError, LogicalTypeMismatchError, RecordEncodeError
    │   ├── InvalidSchemaError, IncompatibleSchemaError
    │   └── RegistryStoreError              (the embedded registry's _schemas topic)
    ├── streams.validation.Invalid          (a decoded value breaks a rule: reason for the DLQ)
    └── agents.llm.errors.LLMError          (retriable flag, retry_after_s)
        ├── LLMTimeoutError, LLMServerError, LLMRateLimitedError, CircuitOpenError
        └── LLMMalformedOutputError

Errors carry a ``retriable`` flag: retry code reads the flag instead of chaining
``isinstance`` checks (the aiokafka habit).
"""


class ReviewPulseError(Exception):
    """Base of every ReviewPulse error."""

    retriable: bool = False
