"""The avatex wire protocol (placeholder until the server issue lands; see docs/protocol.md)."""
