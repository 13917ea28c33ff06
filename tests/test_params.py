"""params.yaml, the one configuration: the generated schema, validation after merging, the resolver,
and the settings as command-line options."""

import json
import subprocess
import sys

import pytest
import yaml

from g4g import params as P
from g4g.cli import build_parser


def test_committed_schema_is_the_generated_one():
    """The schema Snakemake validates with is written from the dataclasses: any drift in a key, a type or a
    default fails here (regenerate with `g4g params schema --write`)."""
    assert P.SCHEMA_PATH.read_text() == P.schema_text()


def test_every_section_default_is_in_the_schema():
    s = yaml.safe_load(P.SCHEMA_PATH.read_text())
    for name in P.SECTIONS:
        cls = P.section_class(name)
        props = s["properties"][name]["properties"]
        assert set(props) == {f.name for f in P.dataclasses.fields(cls)}, name
        built = P.build(cls, {})  # every default filled in by the schema, then typed
        for f in P.dataclasses.fields(cls):
            value = getattr(built, f.name)
            if not P.dataclasses.is_dataclass(value):  # nested sections default to {} (their own defaults)
                assert P.as_dict(value) == props[f.name].get("default"), f"{name}.{f.name}"


def test_params_yaml_is_valid_and_resolves_every_dataset():
    cfg = P.load()
    demo, hdtf = P.resolve(cfg, "demo"), P.resolve(cfg, "hdtf")
    assert demo.model.size == "demo" and hdtf.model.size == "paper"
    assert demo.train.allow_no_perceptual and not hdtf.train.allow_no_perceptual
    assert hdtf.train.weights.lambda_con == 5.0 and demo.sync.steps == 200 and hdtf.sync.steps == 50_000
    assert demo.evaluate.allow_surrogates and not hdtf.evaluate.allow_surrogates
    assert isinstance(demo.train.stages[0], P.Stage) and isinstance(hdtf.train.betas, tuple)


def test_a_misspelt_override_is_an_error_that_names_it():
    cfg = P.load()
    cfg["datasets"]["demo"]["overrides"]["landmarks"] = {"detect_evry": 3}
    with pytest.raises(ValueError, match="landmarks.*detect_evry"):
        P.resolve(cfg, "demo")
    cfg = P.load()
    cfg["datasets"]["demo"]["overrides"]["trian"] = {"lr": 1.0}
    with pytest.raises(ValueError, match="trian"):
        P.resolve(cfg, "demo")
    cfg = P.load()
    cfg["datasets"]["demo"]["overrides"]["sync"] = {"batch": "big"}
    with pytest.raises(ValueError, match="sync.batch"):
        P.resolve(cfg, "demo")


def test_deep_merge_replaces_lists_and_merges_mappings():
    assert P.deep_merge({"a": {"b": 1, "c": [1]}, "d": 2}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}, "d": 2}


def test_settings_precedence_params_yaml_json_options():
    ap = build_parser(["faces"])
    base = ["faces", "--resampled", "r", "--out", "o", "--rejects", "x"]
    a = ap.parse_args(base)
    assert P.from_args(a).crop == P.project_params().crop
    a = ap.parse_args(base + ["--params", json.dumps({"crop": {"scale": 1.2}})])
    assert P.from_args(a).crop.scale == 1.2
    a = ap.parse_args(base + ["--params", json.dumps({"crop": {"scale": 1.2}}), "--crop.scale", "1.3",
                              "--landmarks.backend", "fan"])
    p = P.from_args(a)
    assert p.crop.scale == 1.3 and p.landmarks.backend == "fan"
    with pytest.raises(ValueError, match="crop.scale"):
        P.from_args(ap.parse_args(base + ["--crop.scale", "0.5"]))  # the schema's minimum 1.0
    with pytest.raises(ValueError, match="unexpected"):
        P.from_args(ap.parse_args(base + ["--params", json.dumps({"crop": {"scael": 1.2}})]))


def test_help_lists_every_setting_of_the_command():
    out = subprocess.run([sys.executable, "-m", "g4g", "faces", "--help"], capture_output=True, text=True).stdout
    for f in P.dataclasses.fields(P.LandmarkParams):
        assert f"--landmarks.{f.name}" in out
    for f in P.dataclasses.fields(P.CropParams):
        assert f"--crop.{f.name}" in out
    assert "(default: 25)" in out  # landmarks.max_gap: one default, the dataclass's


def test_variants_registry_is_what_the_workflow_reads():
    """params.yaml `variants`, the schema's enum and the table names all come from g4g.params.VARIANTS."""
    s = yaml.safe_load(P.SCHEMA_PATH.read_text())
    assert s["properties"]["variants"]["items"]["enum"] == list(P.VARIANTS)
    assert P.load()["variants"] == list(P.VARIANTS)
    assert {P.VARIANT_OF_METHOD[v.method] for v in P.VARIANTS.values()} == set(P.VARIANTS)
