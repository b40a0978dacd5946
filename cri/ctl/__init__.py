"""`enginectl`: the engine's Docker-like client, speaking to engined over its socket."""
