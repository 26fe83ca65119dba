"""Package attributes loaded on first use (PEP 562), for the packages whose modules are costly.

::

    _HOMES = {"manager": ("IntegrationManager",), "registry": ("Registry",)}
    __getattr__ = lazy_attributes(__name__, _HOMES, globals())

Importing one module of such a package (the CLI's ``integration list`` needs the registry; the
sandbox launcher needs ``spacedrive.sandbox.launch`` on every integration start) then runs its
``__init__`` without importing every other module. The package keeps a ``TYPE_CHECKING``
block with the same imports, for type checkers, and a literal ``__all__``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # nothing at run time: the sandbox launcher imports this on every start
    from collections.abc import Callable, Mapping, MutableMapping, Sequence
    from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, homes: Mapping[str, Sequence[str]], namespace: MutableMapping[str, Any]
) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``name`` from its module in ``homes`` (module → names)
    the first time it is asked for, and keeps it in ``namespace`` (the package's globals)."""
    where = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
