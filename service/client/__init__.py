"""A small HTTP client of the genvault API, for the CLI and for scripts."""

from service.client.api import DEFAULT_TOKEN, DEFAULT_URL, ApiClient, ApiError

__all__ = ["DEFAULT_TOKEN", "DEFAULT_URL", "ApiClient", "ApiError"]
