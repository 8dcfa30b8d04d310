"""loggate's Python client.

- `Client`: ``log``, ``log_batch`` and a ``tail`` that resumes by token
  across reconnects, over one gateway or several (failover).
- `LoggateHandler`: a `logging.Handler` that never blocks the application,
  batches over LogStream and retries with the same record ids.
- ``python -m loggate tail --service NAME``: follow records in a terminal.
- `loggate.v1`: the generated protobuf and gRPC stubs (``loggate_pb2``,
  ``loggate_pb2_grpc``), for everything else.
"""

from ._channel import DEFAULT_TARGET, TlsConfig
from ._records import Level, LogRecord, level_of, make_record, new_id
from .client import Client, LoggateError, Tail
from .handler import HandlerStats, LoggateHandler

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "Client",
    "HandlerStats",
    "Level",
    "LogRecord",
    "LoggateError",
    "LoggateHandler",
    "Tail",
    "TlsConfig",
    "level_of",
    "make_record",
    "new_id",
]
