"""The per-pod monitor process and the runtime's client for it."""
