"""The CRI wire contract (runtime.v1): our .proto, the gRPC servicer and the streaming server."""
