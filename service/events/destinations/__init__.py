"""Where events go: an HTTP endpoint, or a broker or cloud queue (one adapter per type)."""
