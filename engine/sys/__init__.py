"""The syscall seam: ctypes wrappers (linux), the Syscalls Protocol, and a recording fake."""
