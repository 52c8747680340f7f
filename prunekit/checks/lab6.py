"""Checks for Lab 6 (filled in by the lab's author)."""
__all__: list[str] = []
