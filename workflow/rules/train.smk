# Phase 4: training. The lip-sync expert first (frozen afterwards), then one G4G model per variant.
# Both commands resume from their latest checkpoint when rerun (a killed or time-limited job continues):
# the checkpoints/ folder is not an output, so Snakemake never deletes it.
rule train_sync:
    input:
        clips=rules.prepare.output.clips,
    output:
        model="results/models/{dataset}/syncnet.pt",
        metrics="results/models/{dataset}/syncnet/metrics.json",
        losses="results/models/{dataset}/syncnet/losses.csv",
        config="results/models/{dataset}/syncnet/config.yaml",
        curve=report("results/models/{dataset}/syncnet/curve.png", caption="../report/training.rst",
                     category="Training", labels={"dataset": "{dataset}", "model": "sync expert",
                                                  "figure": "training curve"}),
    params:
        cfg=lambda w: settings(w.dataset, "sync", "seed"),
        run_dir=lambda w, output: str(Path(output.model).with_suffix("")),
        launch=lambda w, resources: launcher(resources),
        rule_name="train_sync",
    conda:
        ENV
    log:
        "logs/{dataset}/train/syncnet.log",
    benchmark:
        "benchmarks/{dataset}/train/syncnet.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    shell:
        "{params.launch} train-sync --dataset {wildcards.dataset} --clips {input.clips}"
        " --params {params.cfg} --out {output.model} --run-dir {params.run_dir} --rule {params.rule_name}"
        " --threads {threads} --log {log}"


rule train:
    input:
        clips=rules.prepare.output.clips,
        syncnet=rules.train_sync.output.model,
    output:
        **run_outputs("results/models/{dataset}/{variant}", "G4G {variant}"),
    params:
        cfg=lambda w: settings(w.dataset, "model", "train", "seed"),
        launch=lambda w, resources: launcher(resources),
        rule_name="train",
    conda:
        ENV
    log:
        "logs/{dataset}/train/{variant}.log",
    benchmark:
        "benchmarks/{dataset}/train/{variant}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=3 * 24 * 60,
    shell:
        "{params.launch} train --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --clips {input.clips} --syncnet {input.syncnet} --params {params.cfg} --out {output.model}"
        " --rule {params.rule_name} --threads {threads} --log {log}"


# Seed replicates (params.yaml extra_seeds; g4g.evaluate.seeds): a variant trained again under another seed, the
# split and the sync expert unchanged. Scored like the table's run, they give the tables' spread over seeds.
use rule train as train_seed with:
    output:
        **run_outputs("results/models/{dataset}/seed{seed}/{variant}", "G4G {variant}, seed {seed}"),
    params:
        cfg=lambda w: settings(w.dataset, "model", "train", seed=int(w.seed)),
        launch=lambda w, resources: launcher(resources),
        rule_name="train_seed",
    log:
        "logs/{dataset}/train/seed{seed}/{variant}.log",
    benchmark:
        "benchmarks/{dataset}/train/seed{seed}/{variant}.tsv"
