"""Fetching from the internet safely: the downloader and its address policy."""
