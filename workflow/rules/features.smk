# Phase 3: face crops + transforms and mel spectrograms packed in Parquet shards; the clip index.


rule crops:
    input:
        table=rules.resample.output.table,
        landmarks=rules.landmarks.output.table,
    output:
        frames="results/{dataset}/shards/{shard}.frames.parquet",
        rejects="results/{dataset}/rejects/crops/{shard}.parquet",
    params:
        crop=as_json(config["crop"]),
    conda:
        ENV
    log:
        "logs/{dataset}/crops/{shard}.log",
    benchmark:
        "benchmarks/{dataset}/crops/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=3000,
    shell:
        "g4g crops --resampled {input.table} --landmarks {input.landmarks} --params {params.crop}"
        " --out {output.frames} --rejects {output.rejects} --log {log}"


rule mels:
    input:
        table=rules.resample.output.table,
    output:
        mels="results/{dataset}/shards/{shard}.mels.parquet",
        rejects="results/{dataset}/rejects/mels/{shard}.parquet",
    params:
        cfg=as_json({"mel": config["mel"], "stage": stage_params()}),
    conda:
        ENV
    log:
        "logs/{dataset}/mels/{shard}.log",
    benchmark:
        "benchmarks/{dataset}/mels/{shard}.tsv"
    shell:
        "g4g mels --resampled {input.table} --params {params.cfg}"
        " --out {output.mels} --rejects {output.rejects} --log {log}"


rule prepare:
    input:
        manifest=rules.scan.output.manifest,
        frames=per_shard(rules.crops.output.frames),
        mels=per_shard(rules.mels.output.mels),
        rejects=per_shard([rules.scan.output.rejects, rules.resample.output.rejects,
                           rules.landmarks.output.rejects, rules.crops.output.rejects,
                           rules.mels.output.rejects]),
    output:
        clips="results/{dataset}/clips.parquet",
        rejects="results/{dataset}/rejects.parquet",
        summary="results/{dataset}/prepared.json",
    conda:
        ENV
    log:
        "logs/{dataset}/prepare.log",
    shell:
        "g4g prepare-summary --manifest {input.manifest} --frames {input.frames} --mels {input.mels}"
        " --rejects-in {input.rejects} --clips {output.clips} --rejects {output.rejects}"
        " --summary {output.summary} --log {log}"
