"""Our HTTP/2 + gRPC server for the CRI socket (engined --grpc-server kpy).

frames (wire format), huffman + hpack (header compression, RFC 7541), stream + connection
(the RFC 9113 state machine and flow control, no I/O), wire + context + calls + session
(gRPC over HTTP/2: messages, status, deadlines, the ServicerContext, running handlers),
server (the selector event loop on a unix socket and the worker pool).
"""
