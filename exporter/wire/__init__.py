"""Wire formats: pure bytes <-> frozen dataclasses; no sockets, no clocks."""
