"""Spacedrive Integration System: a file-management core and the integrations that extend it."""

__version__ = "0.1.0"

__all__ = ["__version__"]
