"""Per-cell analysis stages: each reads a cell's dumps and writes one tidy CSV (docs/methods.md).

Modules: `metrics` (probe-free metrics), `probes` (calibration probes), `permutation`
(matched-confidence gaps and within-bin permutation tests), `bandwidth` (NW bandwidth
sensitivity), `planted` (the planted control). Each has a `main()` command line.
"""
