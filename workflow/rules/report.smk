# Figures for `snakemake --report`: what people would rather look at than read. The report itself:
#   snakemake --report results/report.html   (tables, metric charts against the paper, training curves,
#   frame strips; `make demo` writes it last). Tables, charts and strips are flagged where they are made
#   (tables.smk, evaluate.smk); training curves in train.smk.


report: "../report/workflow.rst"


rule contact_sheet:
    input:
        frames=lambda w: f"results/{w.dataset}/shards/{shards(w.dataset)[0]}.frames.parquet",
        mels=lambda w: f"results/{w.dataset}/shards/{shards(w.dataset)[0]}.mels.parquet",
        resampled=lambda w: f"results/{w.dataset}/resampled/{shards(w.dataset)[0]}.parquet",
        ready=rules.prepare.output.summary,
    output:
        png=report("results/{dataset}/contact_sheet.png", caption="../report/contact_sheet.rst", category="Data",
                   labels={"dataset": "{dataset}", "figure": "contact sheet"}),
    params:
        n=6,
    conda:
        ENV
    log:
        "logs/{dataset}/contact_sheet.log",
    shell:
        "g4g contact-sheet --frames {input.frames} --mels {input.mels} --resampled {input.resampled}"
        " -n {params.n} --out {output.png} --log {log}"
