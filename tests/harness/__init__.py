"""Test harness shared by `make` targets and pytest fixtures: tools, registry, control plane."""
