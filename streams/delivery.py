"""The producer's size errors, translated once: an output Kafka refuses for its size.

aiokafka refuses a record over ``max_request_size`` before sending it
(``MessageSizeTooLargeError``), and a broker whose ``max.message.bytes`` is lower answers
MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE in the delivery future. Neither changes on
retry (DESIGN §12), so both become :class:`~streams.errors.OutputTooLarge` and the
caller dead-letters the record instead of retrying its batch forever (issue 30, finding 4).
Every other error passes unchanged: a broker that is down may come back.
"""

from __future__ import annotations

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from streams.errors import OutputTooLarge

_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def is_too_large(exc: BaseException) -> bool:
    return isinstance(exc, (OutputTooLarge, *_TOO_LARGE))


def translate(exc: BaseException) -> BaseException:
    """``exc`` as ours when it says the record is too large; otherwise ``exc`` itself."""
    if isinstance(exc, _TOO_LARGE):
        error = OutputTooLarge(f"Kafka refused the output for its size: {exc}")
        error.__cause__ = exc
        return error
    return exc
