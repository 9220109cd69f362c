"""OCFL 1.1: every archived job an object, every project's prefix a storage root.

genvault's archive is meant to outlive genvault, so it is written in the Oxford Common File
Layout (https://ocfl.io/1.1/spec/), which repositories and validators genvault's developers
did not write can read. ``naming`` maps a job to its object's place (the registered
``0003-hash-and-id-n-tuple-storage-layout`` extension), ``inventory`` builds and checks the
inventory, and ``objects`` writes an object's structure around the content the archive task
stored and reads it back.
"""
