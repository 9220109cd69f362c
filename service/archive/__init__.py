"""The archive: pipeline, inline inputs, manifest, layout, audit, image checks."""
