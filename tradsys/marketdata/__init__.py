"""The market-data feed's protocol and the sidecar's published-book store, shared by the
sidecar (``tradsys.cores.md``) and the subscriber library (``tradsys.client.marketdata``).
The format is specified in docs/marketdata.md."""
