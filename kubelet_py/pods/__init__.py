"""Pods: sources, one worker per pod, a pure planner, the CRI executor, PLEG and status."""
