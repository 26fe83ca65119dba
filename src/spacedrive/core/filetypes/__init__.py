"""File types: the registry of known formats and the identification of files.

See :mod:`spacedrive.core.filetypes._registry` for the id scheme, the definition format and the
identification rules. Built-in definitions live in ``definitions/*.toml`` beside this file.
"""

from spacedrive.core.filetypes._registry import (
    DEFAULT_PRIORITY,
    GENERIC_BINARY_ID,
    GENERIC_TEXT_ID,
    HEAD_SIZE,
    STRONG_MAGIC_BYTES,
    Category,
    Confidence,
    DuplicateFileTypeError,
    FileType,
    FileTypeDefinitionError,
    FileTypeError,
    FileTypeRegistry,
    Identification,
    MagicPattern,
    load_definitions,
    looks_like_text,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "GENERIC_BINARY_ID",
    "GENERIC_TEXT_ID",
    "HEAD_SIZE",
    "STRONG_MAGIC_BYTES",
    "Category",
    "Confidence",
    "DuplicateFileTypeError",
    "FileType",
    "FileTypeDefinitionError",
    "FileTypeError",
    "FileTypeRegistry",
    "Identification",
    "MagicPattern",
    "load_definitions",
    "looks_like_text",
]
