"""Our runtime.v1 .proto and the stubs generated from it (`make proto`)."""
