"""What TradSys users import: the order-entry client (``tradsys.client.orders``) and the
market-data subscriber (``tradsys.client.marketdata``)."""
