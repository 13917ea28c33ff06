# Phase 1: the raw data. The demo set is generated; real datasets are read where params.yaml points.
import os

DEMO = config["datasets"].get("demo", {})


rule demo_data:
    output:
        clips=expand("{root}/demo_{i:03d}.mp4", root=DEMO.get("root", "resources/datasets/demo"),
                     i=range(DEMO.get("n_clips", 0))),
        index=f"{DEMO.get('root', 'resources/datasets/demo')}/demo.json",
    params:
        cfg=settings("demo", "seed", with_dataset=True) if "demo" in PARAMS else "{}",
        root=lambda w, output: os.path.dirname(output.index),
    conda:
        ENV
    log:
        "logs/demo/demo_data.log",
    benchmark:
        "benchmarks/demo/demo_data.tsv"
    shell:
        "g4g demo-data --out {params.root} --params {params.cfg} --log {log}"


rule scan:
    input:
        videos=lambda w: dataset_videos(w.dataset),
    output:
        manifest="results/{dataset}/manifest.parquet",
        rejects="results/{dataset}/rejects/scan.parquet",
    params:
        ds=lambda w: settings(w.dataset, "seed", with_dataset=True),
    conda:
        ENV
    log:
        "logs/{dataset}/scan.log",
    shell:
        "g4g scan --params {params.ds} --out {output.manifest} --rejects {output.rejects} --log {log}"


rule resample:
    input:
        manifest=rules.scan.output.manifest,
    output:
        table="results/{dataset}/resampled/{shard}.parquet",
        rejects="results/{dataset}/rejects/resample/{shard}.parquet",
    params:
        stage=lambda w: settings(w.dataset, "video", "audio"),
    conda:
        ENV
    log:
        "logs/{dataset}/resample/{shard}.log",
    benchmark:
        "benchmarks/{dataset}/resample/{shard}.tsv"
    resources:
        mem_mb=2000,
    shell:
        "g4g resample --manifest {input.manifest} --shard {wildcards.shard} --params {params.stage}"
        " --out {output.table} --rejects {output.rejects} --log {log}"
