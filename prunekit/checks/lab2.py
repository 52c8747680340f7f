"""Checks and reference implementations for Lab 2 (filled in by the Lab 2 author)."""

__all__ = []
