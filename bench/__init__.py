"""Benchmark of the chat server against a bare in-memory aiohttp baseline (issue 6)."""
