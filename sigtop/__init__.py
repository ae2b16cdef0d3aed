"""sigtop: a live, top-like monitor of Linux signals, counted exactly in the kernel (eBPF)."""
