# Phase 2: 68-point landmarks per 25 fps frame (detection + tracking + smoothing + interpolation).


rule landmarks:
    input:
        table=rules.resample.output.table,
    output:
        table="results/{dataset}/landmarks/{shard}.parquet",
        rejects="results/{dataset}/rejects/landmarks/{shard}.parquet",
    params:
        lm=as_json(config["landmarks"]),
    conda:
        ENV
    log:
        "logs/{dataset}/landmarks/{shard}.log",
    benchmark:
        "benchmarks/{dataset}/landmarks/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
    shell:
        "g4g landmarks --resampled {input.table} --params {params.lm}"
        " --out {output.table} --rejects {output.rejects} --log {log}"
