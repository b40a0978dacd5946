"""Network drivers: pod networking through CNI plugins (ours or the reference ones)."""
