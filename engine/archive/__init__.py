"""Offline image transport: `docker save` and OCI image-layout tar archives, in and out."""
