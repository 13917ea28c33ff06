# G4G pipeline: raw talking-head videos -> shards -> sync expert + G4G variants -> inference -> metrics -> tables.
# Usage: snakemake --cores 8 [target]; on a cluster add --workflow-profile profiles/slurm.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    shard=r"s\d{4}",
    variant="|".join(config["variants"]),
    seed=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


# On a cluster (--workflow-profile profiles/slurm) these run where Snakemake runs instead of as jobs: each
# merges small files in seconds, and as a job it waited in the queue and for the next status check longer
# than it ran (docs/decisions.md, "Cluster")
localrules:
    prepare,
    contact_sheet,
    tables,


rule all:
    default_target: True
    input:
        expand(rules.prepare.output.summary, dataset=DATASET),
        expand(rules.contact_sheet.output.png, dataset=DATASET),
        expand(rules.train.output.model, dataset=DATASET, variant=VARIANTS),
        rules.tables.output.table1,
        expand(rules.fingerprints.output.csv, dataset=DATASET),
