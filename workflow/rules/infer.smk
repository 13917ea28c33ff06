# Phase 5: inference with every trained variant in the reconstruction setting (each test clip driven by its own
# audio), with the full model also driven by another test clip's audio and by silence (the cross-driven table),
# and the baseline videos of table 1 rendered the same way (composite + feathered paste) in every setting.
# Each job writes one folder of {clip}.mp4 (cross/, silent/ below) plus an index (a failed clip is a row with
# its reason).
from g4g.evaluate.wiring import checkpoint, methods, render_settings

METHODS = methods(PARAMS[DATASET])
MODELS = (rules.train.output.model, rules.train_seed.output.model)


rule infer:
    input:
        clips=rules.prepare.output.clips,
        resampled=per_shard(rules.resample.output.table),
        frames=per_shard(rules.faces.output.frames),
        model=lambda w: checkpoint(PARAMS[w.dataset], w.method, MODELS),
    output:
        videos=directory("results/videos/{dataset}/{method}"),
        index="results/videos/{dataset}/{method}.index.parquet",
        rejects="results/{dataset}/rejects/infer/{method}.parquet",
    wildcard_constraints:
        method="|".join(METHODS["model"] + METHODS["replicates"]) or "(?!)",
    params:
        cfg=lambda w: settings(w.dataset, "infer", "mel", "audio", "seed"),  # seed: the cross-driven pairing
        settings=lambda w: render_settings(w.method),
    conda:
        ENV
    log:
        "logs/{dataset}/infer/{method}.log",
    benchmark:
        "benchmarks/{dataset}/infer/{method}.tsv"
    threads: config["infer"]["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "g4g infer --clips {input.clips} --resampled {input.resampled} --checkpoint {input.model}"
        " --params {params.cfg} --out {output.videos} --index {output.index} --rejects {output.rejects}"
        " --settings {params.settings} --threads {threads} --log {log}"


rule reference_videos:
    input:
        clips=rules.prepare.output.clips,
        resampled=per_shard(rules.resample.output.table),
        frames=per_shard(rules.faces.output.frames),
    output:
        videos=directory("results/videos/{dataset}/{method}"),
        index="results/videos/{dataset}/{method}.index.parquet",
        rejects="results/{dataset}/rejects/infer/{method}.parquet",
    wildcard_constraints:
        method="|".join(METHODS["baselines"]) or "(?!)",
    params:
        cfg=lambda w: settings(w.dataset, "infer", "mel", "audio", "seed"),
    conda:
        ENV
    log:
        "logs/{dataset}/infer/{method}.log",
    benchmark:
        "benchmarks/{dataset}/infer/{method}.tsv"
    threads: config["infer"]["threads"]
    resources:
        mem_mb=4000,
    shell:
        "g4g reference-videos --kind {wildcards.method} --clips {input.clips} --resampled {input.resampled}"
        " --params {params.cfg} --out {output.videos} --index {output.index} --rejects {output.rejects}"
        " --threads {threads} --log {log}"
