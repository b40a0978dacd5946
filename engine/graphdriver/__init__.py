"""Graph drivers: image and container filesystems as snapshots (overlay, vfs)."""
