"""One module per reproduction, each defining ``REPRODUCTION`` (a
:class:`~weightinit.reproduce.core.Reproduction`); :mod:`weightinit.reproduce.catalog` finds
them here, so a new reproduction is one new module."""
