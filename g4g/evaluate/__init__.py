"""Evaluation under one frozen protocol (docs/design/method.md Sec. 9) and the paper's tables
(docs/design/pipeline.md Sec. 5).

    protocol.py     re-cropping any method's video with the stored ground-truth crop transforms; LSE of a
                    clip streamed chunk by chunk, on crops (ChunkedLSE) and framed as syncnet_python (TrackedLSE)
    registry.py     every metric behind one accumulator interface (feed(chunk), summary()), the networks
                    available (and why some are not), and the registry that owns the tables' metric columns
    own_syncnet.py  the project's sync expert as a labelled LSE surrogate ("LSE-C (own SyncNet)")
    score.py        one method over the test clips: per-frame Parquet, summary JSON, report strip
    tracking.py     one MLflow run per (dataset, method), linked to its training run
    paper.py        the numbers the paper publishes (Tables 1-3), as data
    tables.py       table1/table2/table_cross CSV + Markdown, the DVC metrics JSON and plot data
    charts.py       bar charts against the paper, frame strips
    wiring.py       workflow glue: method lists and each job's parameters (infer/evaluate/tables.smk)
    commands.py     the `g4g evaluate` and `g4g tables` subcommands
"""
