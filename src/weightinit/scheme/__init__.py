"""Schemes: the one protocol every scheme follows and the built-in classic and automatic
schemes; the architecture recipes are in :mod:`weightinit.recipes`."""
