"""Our CNI plugins (bridge, host-local-compatible IPAM, loopback).

Each plugin module is both an executable (a console script named ``kpy-<plugin>``) and
an in-process entry point (``run(request)``) that the engine's network driver may call
directly. The executable is the contract; the in-process path runs the same code.
Keep imports here minimal: a plugin exec's Python startup time is on the pod's path.
"""
