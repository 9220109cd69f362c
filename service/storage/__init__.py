"""Archive stores: where archived images and manifests live."""
