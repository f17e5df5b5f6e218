"""Every librdkafka error the engine can meet, sorted into what the engine does about it.

The rule that keeps an app up through broker restarts: only an error that would repeat
identically after a restart (configuration, authorization, protocol support, a record the
broker will never accept) stops the app. Everything a broker outage, a leader move or a
coordinator reload can cause is recovered from, however long the outage lasts.

| class      | what the engine does                                                     |
|------------|--------------------------------------------------------------------------|
| RETRIABLE  | the same call again after a backoff (bounded by a deadline and by stop)  |
| ABORTABLE  | abort the transaction (or drop uncommitted work), rewind every task to   |
|            | its committed offsets and state, continue. A producer too broken to      |
|            | abort is replaced: `init_transactions` on a new one aborts on the broker |
| FENCED     | another instance owns our transactional.id or our partitions: drop tasks |
|            | uncommitted, new clients, rejoin the group                               |
| FATAL      | stop with a message naming what failed                                   |

Sources (librdkafka's INTRODUCTION.md "Error handling" and the transactional API docs):
`txn_requires_abort()` means ABORTABLE; `retriable()` means the call may be repeated;
`fatal()` means this *producer instance* is unusable, which for a transactional producer after
an outage (INVALID_TXN_STATE, sequence gaps, an unknown producer id) is cured by a new
producer instance: so a fatal error is ABORTABLE unless its code is in FATAL_CODES.
"""

from __future__ import annotations

import enum

from confluent_kafka import KafkaError


class ErrorClass(enum.Enum):
    RETRIABLE = "retriable"
    ABORTABLE = "abortable"
    FENCED = "fenced"
    FATAL = "fatal"


FENCED_CODES = frozenset({
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.FENCED_INSTANCE_ID,
})

# Would fail the same way after any restart: a person has to change something.
FATAL_CODES = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError.UNSUPPORTED_VERSION,
    KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    KafkaError._UNSUPPORTED_FEATURE,
    KafkaError.INVALID_CONFIG,
    KafkaError._INVALID_ARG,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TRANSACTION_COORDINATOR_FENCED,
    KafkaError.INVALID_TRANSACTION_TIMEOUT,
    KafkaError.POLICY_VIOLATION,
})

# Transient whatever the client's retriable flag says: the broker is away, moving or loading.
TRANSIENT_CODES = frozenset({
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.CONCURRENT_TRANSACTIONS,
    KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.FETCH_SESSION_ID_NOT_FOUND,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.THROTTLING_QUOTA_EXCEEDED,
})

# The group moved on without us (offset commits, send_offsets): our partitions may be
# elsewhere now; nothing uncommitted may be written, the next assignment decides.
GROUP_CODES = frozenset({
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
})


def classify(err: KafkaError) -> ErrorClass:
    """What the engine does about `err` (see the table in this module's docstring)."""
    code = err.code()
    if code in FENCED_CODES:
        return ErrorClass.FENCED
    if code in FATAL_CODES:
        return ErrorClass.FATAL
    if err.txn_requires_abort():
        return ErrorClass.ABORTABLE
    if err.fatal():
        return ErrorClass.ABORTABLE  # this producer instance is done; a new one is not
    if err.retriable() or code in TRANSIENT_CODES:
        return ErrorClass.RETRIABLE
    # Unknown and not marked fatal: assume the safe recovery. Aborting and rewinding loses
    # nothing and duplicates nothing visible under exactly-once.
    return ErrorClass.ABORTABLE


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a confluent_kafka.KafkaException (None for anything else)."""
    arg = exc.args[0] if getattr(exc, "args", None) else None
    return arg if isinstance(arg, KafkaError) else None
