"""CNI benchmarks: our plugins against the reference ones."""
