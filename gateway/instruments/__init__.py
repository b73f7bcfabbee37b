"""Point-of-care instruments: registry, QC, the ASTM/POCT1-A paths, read API (docs/instruments.md)."""
