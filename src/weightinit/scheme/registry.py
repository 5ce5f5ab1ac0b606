"""The schemes reachable by name: one registry for the built-in schemes, the recipes and yours.

Names are looked up the way initializer names are (:func:`weightinit.get`): any case,
``-``/``_`` ignored, aliases ("kaiming" for "he", "xavier" for "glorot"), and close matches
suggested in the error.
"""

from __future__ import annotations

from weightinit._names import NameTable
from weightinit.scheme.protocol import Scheme

__all__ = ["get_scheme", "register_scheme", "schemes"]

_SCHEMES: dict[str, Scheme] = {}  # canonical name -> scheme, in registration order
_NAMES: NameTable[Scheme] = NameTable("scheme", "weightinit schemes")


def register_scheme(scheme: Scheme) -> Scheme:
    """Make ``scheme`` reachable by its name and aliases in :func:`weightinit.plan`,
    :func:`weightinit.init`, :func:`weightinit.schemes` and the command line.

    Every scheme follows the same protocol (:class:`~weightinit.scheme.protocol.Scheme`: a
    survey of the whole model, a choice per parameter, a calibration), so a scheme defined
    outside the package is planned, listed and checked exactly as the built-in ones are.

    Example:
        >>> import torch, weightinit as wi
        >>> def choose(p, options):  # one parameter's description -> a Choice
        ...     if p.role == "weight":
        ...         return wi.Choice("orthogonal", {"gain": 0.5}, "half-gain orthogonal")
        ...     return wi.Choice("zeros", {}, f"{p.role}: 0")
        >>> _ = wi.register_scheme(wi.Scheme("half_orthogonal", "orthogonal, gain 1/2", choose))
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4))
        >>> wi.plan(net, "Half-Orthogonal")["0.weight"].reason
        'half-gain orthogonal'
    """
    if not isinstance(scheme, Scheme):
        raise TypeError(f"register_scheme: pass a weightinit.Scheme, got {type(scheme).__name__}")
    _NAMES.add(scheme.name, scheme.aliases, scheme)
    _SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str | Scheme) -> Scheme:
    """The scheme called ``name`` (any case, ``-``/``_`` ignored, aliases); a
    :class:`~weightinit.scheme.protocol.Scheme` is returned unchanged. An unknown name is a
    ValueError with the close matches and every registered scheme.

    Example:
        >>> from weightinit.scheme.registry import get_scheme
        >>> get_scheme("Kaiming").name
        'he'
        >>> get_scheme("lsvu")
        Traceback (most recent call last):
        ...
        ValueError: unknown scheme 'lsvu'. Did you mean 'lsuv'... The schemes: he, orthogonal, ..., lsuv, auto...
    """
    if isinstance(name, Scheme):
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"`scheme` must be a scheme's name (a str, see weightinit.schemes()) or a "
            f"weightinit.Scheme, got {type(name).__name__}"
        )
    try:
        return _NAMES.get(name)
    except ValueError as err:
        raise ValueError(f"{err} The schemes: {', '.join(_SCHEMES)}.") from None


def schemes() -> dict[str, str]:
    """Every scheme name with its one-line description, in registration order.

    Example:
        >>> import weightinit
        >>> all(name in weightinit.schemes() for name in ("he", "torch", "auto", "lsuv"))
        True
    """
    return {name: s.description for name, s in _SCHEMES.items()}
