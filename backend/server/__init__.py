"""The avatex backend server: ZeroMQ ROUTER loop, operations, jobs, security (docs/protocol.md).

``avatex serve`` builds a :class:`Server` from a :class:`ServerConfig`; embedders and tests do the same
(``Server(config).start_thread()``). Operations live in one table, :data:`OPERATIONS`.
"""

from backend.server.ops import OPERATIONS, Operation
from backend.server.server import Server, ServerConfig

__all__ = ["OPERATIONS", "Operation", "Server", "ServerConfig"]
