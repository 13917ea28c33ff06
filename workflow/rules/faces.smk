# Phase 2: 68-point landmarks (detection + tracking + smoothing + interpolation) and the 416 x 320 face
# crops with their transforms, in one decode pass per clip (g4g.data.faces.face_clip), packed in a
# Parquet frame shard. `g4g landmarks` and `g4g crops` run the same two steps as separate passes.


rule faces:
    input:
        table=rules.resample.output.table,
    output:
        frames="results/{dataset}/shards/{shard}.frames.parquet",
        rejects="results/{dataset}/rejects/faces/{shard}.parquet",
    params:
        cfg=lambda w: settings(w.dataset, "landmarks", "crop", "video"),
    conda:
        ENV
    log:
        "logs/{dataset}/faces/{shard}.log",
    benchmark:
        "benchmarks/{dataset}/faces/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
    shell:
        "g4g faces --resampled {input.table} --params {params.cfg}"
        " --out {output.frames} --rejects {output.rejects} --log {log}"
