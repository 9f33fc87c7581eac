"""Wire protocols spoken at the edge of the engine: the binary TCP order-entry protocol
(also the framing of the colocated handshake), later FIX and HTTP/WebSocket."""
