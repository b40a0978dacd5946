"""Our HTTP/2 + gRPC server for the CRI socket (engined --grpc-server kpy).

frames (wire format), huffman + hpack (header compression, RFC 7541), stream + connection
+ sender (the RFC 9113 state machine and flow control, no I/O), guard (the flood limits:
PING, SETTINGS, rapid reset, empty frames), wire + compression + context + calls + session
(gRPC over HTTP/2: messages, gzip/deflate requests, status, deadlines, the
ServicerContext, running handlers), server (the selector event loop on a unix socket and
the worker pool).
"""
