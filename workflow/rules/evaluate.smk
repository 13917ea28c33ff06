# Phase 6: every method scored by one frozen protocol (docs/design/method.md Sec. 9): our variants, the baselines,
# the ground truth (LSE of the real videos) and external methods' own videos (params.yaml
# evaluate.external_methods), all re-cropped with the stored ground-truth crop transforms.
from g4g.evaluate.wiring import evaluate_inputs, optional_flags


rule evaluate:
    input:
        unpack(lambda w: evaluate_inputs(
            PARAMS[w.dataset], w.method,
            {"clips": rules.prepare.output.clips.format(dataset=w.dataset),
             "resampled": expand(rules.resample.output.table, dataset=w.dataset, shard=shards(w.dataset)),
             "frames": expand(rules.faces.output.frames, dataset=w.dataset, shard=shards(w.dataset))},
            rules.infer.output.videos, rules.infer.output.index, MODELS, rules.train_sync.output.model)),
    output:
        frames=directory("results/metrics/{dataset}/{method}"),
        summary="results/metrics/{dataset}/{method}.json",
        strip=report("results/figures/{dataset}/strips/{method}.png", caption="../report/strip.rst",
                     category="Frames", labels={"dataset": "{dataset}", "method": "{method}"}),
    wildcard_constraints:
        method=r"(?!(summary\.json|plots)$)[A-Za-z0-9_.-]+(@seed\d+)?",  # @seed: a seed replicate; not the tables' files
    params:
        cfg=lambda w: settings(w.dataset, "evaluate", "mel", "seed"),  # seed: the cross-driven pairing
        flags=lambda w, input: optional_flags(input),
    conda:
        ENV
    log:
        "logs/{dataset}/evaluate/{method}.log",
    benchmark:
        "benchmarks/{dataset}/evaluate/{method}.tsv"
    threads: config["evaluate"]["threads"]
    resources:
        gpu=1,
        mem_mb=8000,
    shell:
        "g4g evaluate --dataset {wildcards.dataset} --method {wildcards.method} --clips {input.clips}"
        " --resampled {input.resampled} {params.flags} --params {params.cfg} --frames-out {output.frames}"
        " --summary {output.summary} --strip {output.strip} --threads {threads} --log {log}"
