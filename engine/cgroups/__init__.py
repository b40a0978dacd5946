"""cgroups v1 and v2 behind one interface (engine.cgroups.base.CgroupManager)."""
