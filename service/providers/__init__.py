"""Provider clients: how genvault talks to the image-generation APIs it archives from."""
