# Phase 7: table1 / table2 / table_cross (CSV + Markdown) with the paper's published rows beside ours, the DVC metrics
# JSON, plot data and bar charts per dataset (docs/design/pipeline.md Sec. 5).
rule tables:
    input:
        summaries=expand(rules.evaluate.output.summary, dataset=METHODS["datasets"],
                         method=dict.fromkeys(METHODS["table1"] + METHODS["table2"])),
        replicates=[rules.evaluate.output.summary.format(dataset=d, method=m) for d in METHODS["datasets"]
                    for m in methods(PARAMS[d])["replicates"]],
    output:
        table1=report("results/table1.csv", caption="../report/table.rst", category="Tables",
                      labels={"table": "1: comparison"}),
        table2=report("results/table2.csv", caption="../report/table.rst", category="Tables",
                      labels={"table": "2: ablation"}),
        table_cross=report("results/table_cross.csv", caption="../report/table.rst", category="Tables",
                           labels={"table": "cross-driven"}),
        markdown=["results/table1.md", "results/table2.md", "results/table_cross.md"],
        intervals=["results/table1_intervals.csv", "results/table2_intervals.csv", "results/table_cross_intervals.csv"],
        seeds=["results/table1_seeds.csv", "results/table2_seeds.csv"],
        metrics=expand("results/metrics/{dataset}/summary.json", dataset=METHODS["datasets"]),
        # one CSV and one chart per metric column of the registry (g4g.evaluate.registry): folders, so that
        # parsing the workflow needs no list of metrics (and not the metric code that defines it)
        plots=directory(expand("results/metrics/{dataset}/plots", dataset=METHODS["datasets"])),
        charts=[report(directory(f"results/figures/{d}/charts"), patterns=["{metric}.png"],
                       caption="../report/charts.rst", category="Metrics") for d in METHODS["datasets"]],
    params:
        datasets=METHODS["datasets"],
        table1=METHODS["table1"],
        table2=METHODS["table2"],
        table_seed=[f"{d}={PARAMS[d].seed}" for d in METHODS["datasets"]],
    conda:
        ENV
    log:
        "logs/tables.log",
    shell:
        "g4g tables --summaries {input.summaries} {input.replicates} --datasets {params.datasets}"
        " --table1-methods {params.table1} --table2-methods {params.table2}"
        " --table1 {output.table1} --table2 {output.table2} --table-cross {output.table_cross}"
        " --table-seed {params.table_seed} --log {log}"


# Digests of what `dvc repro` publishes, so two groups can compare reproductions without exchanging
# files (g4g.evaluate.fingerprints; `g4g fingerprints` prints the same).
rule fingerprints:
    input:
        tables=[rules.tables.output.table1, rules.tables.output.table2, rules.tables.output.table_cross],
        summary="results/metrics/{dataset}/summary.json",
        prepared=rules.prepare.output.summary,
        syncnet=rules.train_sync.output.model,
        models=expand(rules.train.output.model, variant=VARIANTS, allow_missing=True),
    output:
        csv=report("results/{dataset}/fingerprints.csv", caption="../report/fingerprints.rst",
                   category="Reproduction", labels={"dataset": "{dataset}", "figure": "fingerprints"}),
    params:
        variants=VARIANTS,
    conda:
        ENV
    log:
        "logs/{dataset}/fingerprints.log",
    shell:
        "g4g fingerprints --dataset {wildcards.dataset} --variants {params.variants} --out {output.csv}"
        " --log {log}"
