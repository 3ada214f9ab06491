"""Names of the AMQP headers every platform message carries."""

CORRELATION_ID = "x-correlation-id"
CAUSATION_ID = "x-causation-id"
SERVICE_NAME = "x-service-name"
MESSAGE_TYPE = "x-message-type"
RETRY_COUNT = "x-retry-count"
REDELIVERY_COUNT = "x-redelivery-count"  # times the platform put the message back in its queue
USER_TOKEN = "x-user-token"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MIN_POSITION = "x-min-position"
CLIENT_ADDRESS = "x-client-address"  # set by the gateway: the address it serves the call for

# replies
STATUS = "x-status"
EVENT_POSITION = "x-event-position"
CACHE = "x-cache"
READ_POSITION = "x-read-position"

# events
EVENT_ID = "x-event-id"
AGGREGATE_TYPE = "x-aggregate-type"
AGGREGATE_ID = "x-aggregate-id"
EVENT_VERSION = "x-event-version"  # its position in its aggregate's stream
SCHEMA_VERSION = "x-schema-version"  # the version of its class that wrote it (upcasting)
GLOBAL_POSITION = "x-global-position"
OCCURRED_AT = "x-occurred-at"
EVENT_SIGNATURE = "x-event-signature"  # the relay's: the log holds this event

# dead letters
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ORIGINAL_QUEUE = "x-original-queue"
FAILED_AT = "x-failed-at"
