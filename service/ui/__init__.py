"""The dashboard at /ui/: server-rendered pages over the same database and archive."""
