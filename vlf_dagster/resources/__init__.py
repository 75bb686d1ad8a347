from .store import VlfStore

__all__ = ["VlfStore"]
