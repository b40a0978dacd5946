"""Exec drivers: `native` (our libcontainer, engine.execdriver.nsexec) and `runc` (OCI bundle)."""
