"""The runtime.v1 gRPC servicers: RuntimeService and ImageService over the engine."""
