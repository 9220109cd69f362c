"""The durable task queue, the worker loop and the retry policy."""
