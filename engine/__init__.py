"""The container engine: Graph, registry client, graphdrivers, execdrivers, shims, network."""

__version__ = "0.1.0"
