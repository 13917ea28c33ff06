# Phase 3: mel spectrograms per clip, and the clip index over the frame and mel shards.


rule mels:
    input:
        table=rules.resample.output.table,
    output:
        mels="results/{dataset}/shards/{shard}.mels.parquet",
        rejects="results/{dataset}/rejects/mels/{shard}.parquet",
    params:
        cfg=lambda w: settings(w.dataset, "mel", "audio"),
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
        frames=per_shard(rules.faces.output.frames),
        mels=per_shard(rules.mels.output.mels),
        rejects=per_shard([rules.scan.output.rejects, rules.resample.output.rejects,
                           rules.faces.output.rejects, rules.mels.output.rejects]),
    output:
        clips="results/{dataset}/clips.parquet",
        rejects="results/{dataset}/rejects.parquet",
        summary="results/{dataset}/prepared.json",
    params:
        ds=lambda w: settings(w.dataset, "seed", with_dataset=True),
    conda:
        ENV
    log:
        "logs/{dataset}/prepare.log",
    shell:
        "g4g prepare --manifest {input.manifest} --frames {input.frames} --mels {input.mels}"
        " --rejects-in {input.rejects} --clips {output.clips} --rejects {output.rejects}"
        " --summary {output.summary} --params {params.ds} --log {log}"
