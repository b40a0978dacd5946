"""Pod sandboxes and containers: the engine API the CRI layer calls (engine.runtime.api)."""
