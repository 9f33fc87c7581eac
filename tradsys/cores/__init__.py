"""The per-core processes of a TradSys instance: the supervisor, the shard workers (and,
as they come, the gateway, the market-data sidecar and the recorder). One module per
process; their shared-memory control blocks are in ``control``."""
