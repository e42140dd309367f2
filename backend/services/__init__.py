"""Use cases. The only code that writes: each function flushes, the request boundary commits."""
