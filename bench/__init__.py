"""Benchmarks of otp-service against a hello-world ceiling: ``python -m bench`` (see README.md)."""
