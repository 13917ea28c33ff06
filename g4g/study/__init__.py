"""Table 3 of the paper: a blinded user study (mean opinion scores of visual quality, lip sync and realness).

`g4g study create` freezes a study (clips x methods, re-encoded under opaque names) in a folder, `invite`
makes each rater's personal link, `serve` runs the rating web application, `table` writes
results/table3.csv and .md. store.py owns the SQLite file every other module goes through.
"""
