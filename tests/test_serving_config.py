"""Model configs: the protobuf text-format parser, Triton's defaults, and clear errors."""

from __future__ import annotations

import json

import pytest

from mlsys_lab.serving.config import ConfigError, config_from_dict, config_from_text, load_config, parse_pbtxt
from mlsys_lab.serving.repository import scan_repository, select_versions
from mlsys_lab.serving.server import DEFAULT_MODEL_REPOSITORY

BASIC = """
# a comment
name: "m"
backend: "mlp"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
output { name: "Y" data_type: TYPE_FP32 dims: 2 }   # a repeated field written once, scalar dims
dynamic_batching {
  preferred_batch_size: [ 2, 4 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { max_queue_size: 5 timeout_action: DELAY default_timeout_microseconds: 1000
                         allow_timeout_override: true }
  priority_queue_policy { key: 1 value: { max_queue_size: 3 } }
}
parameters { key: "activation" value: { string_value: "relu" } }
instance_group [ { count: 2 kind: KIND_CPU rate_limiter { resources [ { name: "R" count: 1 } ] priority: 2 } } ]
"""


def test_text_format_parses_into_triton_json_with_defaults():
    cfg = config_from_text(BASIC, model_name="m").to_dict()
    assert cfg["input"][0] == {"name": "X", "data_type": "TYPE_FP32", "dims": [4], "format": "FORMAT_NONE",
                               "optional": False, "allow_ragged_batch": False, "is_shape_tensor": False}
    assert cfg["output"][0]["dims"] == [2]
    db = cfg["dynamic_batching"]
    assert db["preferred_batch_size"] == [2, 4] and db["preserve_ordering"] is False
    assert db["default_queue_policy"] == {"max_queue_size": 5, "timeout_action": "DELAY",
                                          "default_timeout_microseconds": 1000, "allow_timeout_override": True}
    # A level without its own policy is not listed; level 1's policy gets the defaults filled in.
    assert db["priority_queue_policy"] == {"1": {"max_queue_size": 3, "timeout_action": "REJECT",
                                                 "default_timeout_microseconds": 0,
                                                 "allow_timeout_override": False}}
    assert cfg["instance_group"][0]["name"] == "m_0"
    assert cfg["instance_group"][0]["rate_limiter"]["resources"] == [{"name": "R", "count": 1, "global": False}]
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    assert cfg["parameters"] == {"activation": {"string_value": "relu"}}
    # The JSON form is accepted too and means the same.
    assert config_from_dict(json.loads(json.dumps(cfg)), model_name="m").to_dict() == cfg


def test_text_format_syntax():
    tree = parse_pbtxt('a: "x" \'y\'  b { c: -1.5e3 d: [1, 2,] }'.replace(",]", "]"))
    assert [f[0] for f in tree.fields] == ["a", "b"]
    assert tree.fields[0][1].value == "xy"          # adjacent strings concatenate
    cfg = config_from_text('name: "m" backend: "mlp" max_batch_size: 0x10; input < name: "X" data_type: TYPE_FP32 '
                           'dims: [-1] > output [{name: "Y" data_type: TYPE_FP32 dims: [1]}]')
    assert cfg.max_batch_size == 16 and cfg.inputs[0].dims == (-1,)


@pytest.mark.parametrize("text, message", [
    ('name: 3', "name: expected a quoted string, got 3"),
    ('max_batch_size: "8"', "max_batch_size: expected an integer, got '8'"),
    ('max_batch_size: 1.5', "expected an integer, got 1.5"),
    ('max_batch_sze: 1', "unknown field of ModelConfig (did you mean 'max_batch_size'?)"),
    ('input { data_type: TYPE_FP33 }', "did you mean 'TYPE_FP32'?"),
    ('max_batch_size: 1\nmax_batch_size: 2', "config.pbtxt:2: max_batch_size: non-repeated field given more than once"),
    ('input [ { name: "x" ', "expected a field name or '}', got end of file"),
    ('dynamic_batching { preserve_ordering: maybe }', "expected true or false, got maybe"),
    ('name: "m" @', "unexpected character '@'"),
    ('max_batch_size: [1, 2]', "is not a repeated field"),
])
def test_syntax_and_type_errors_name_the_line_and_field(text, message):
    with pytest.raises(ConfigError) as err:
        config_from_text(text)
    assert message in str(err.value)


MINIMAL = ('backend: "mlp" max_batch_size: {mbs} input [{{name: "X" data_type: TYPE_FP32 dims: [4]}}] '
           'output [{{name: "Y" data_type: TYPE_FP32 dims: [2]}}] {extra}')


@pytest.mark.parametrize("mbs, extra, message", [
    (8, 'name: "other"', "does not match its folder 'm'"),
    (0, "dynamic_batching { }", "dynamic_batching needs max_batch_size > 0"),
    (8, "dynamic_batching { preferred_batch_size: [16] }", "must lie in [1, max_batch_size=8]"),
    (8, "dynamic_batching { priority_levels: 2 default_priority_level: 3 }", "default_priority_level must lie in"),
    (8, "dynamic_batching { } sequence_batching { }", "cannot both be set"),
    (8, "instance_group [ { kind: KIND_GPU } ]", "runs models on the CPU"),
    (8, "instance_group [ { count: 0 } ]", "count must be >= 1"),
    (8, "model_transaction_policy { decoupled: true }", "decoupled models"),
    (-1, "", "max_batch_size must be >= 0"),
    (8, 'sequence_batching { control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START } ] } ] }',
     "set exactly one of int32_false_true"),
])
def test_semantic_errors(mbs, extra, message):
    with pytest.raises(ConfigError) as err:
        config_from_text(MINIMAL.format(mbs=mbs, extra=extra), model_name="m")
    assert message in str(err.value)


def test_missing_pieces_are_named():
    with pytest.raises(ConfigError, match="set backend"):
        config_from_text('name: "m" input [{name: "X" data_type: TYPE_FP32 dims: [1]}]')
    with pytest.raises(ConfigError, match="declares no output"):
        config_from_text('name: "m" backend: "mlp" input [{name: "X" data_type: TYPE_FP32 dims: [1]}]')
    with pytest.raises(ConfigError, match="has no dims"):
        config_from_text('name: "m" backend: "mlp" input [{name: "X" data_type: TYPE_FP32}] '
                         'output [{name: "Y" data_type: TYPE_FP32 dims: [1]}]')
    with pytest.raises(ConfigError, match="unknown field of ModelConfig"):
        config_from_dict({"name": "m", "backend": "mlp", "maxbatch": 1})


def test_load_config_from_folder(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ConfigError, match="no config.pbtxt or config.json"):
        load_config(folder)
    (folder / "config.json").write_text(json.dumps({"backend": "mlp", "input": [
        {"name": "X", "data_type": "TYPE_FP32", "dims": ["4"]}], "output": [
        {"name": "Y", "data_type": "TYPE_FP32", "dims": [2]}]}))
    cfg = load_config(folder)
    assert cfg.name == "m" and cfg.inputs[0].dims == (4,)   # int64 as a JSON string is accepted
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(folder)


def test_version_policy(tmp_path):
    folder = tmp_path / "m"
    for v in ("1", "2", "10", "01", "x"):
        (folder / v).mkdir(parents=True)

    def versions(policy):
        cfg = config_from_text(MINIMAL.format(mbs=1, extra=f"version_policy {{ {policy} }}"), model_name="m")
        return select_versions(cfg, folder)

    assert versions("latest { num_versions: 2 }") == [2, 10]     # "01" and "x" are not versions
    assert versions("all { }") == [1, 2, 10]
    assert versions("specific { versions: [1] }") == [1]
    with pytest.raises(ConfigError, match=r"version\(s\) \[3\]"):
        versions("specific { versions: [3] }")


def test_every_shipped_config_loads():
    models = scan_repository(DEFAULT_MODEL_REPOSITORY)
    assert {"digits_mlp", "digits_preprocess", "digits_ensemble", "accumulator", "mlp_large"} <= set(models)
    for name, folder in models.items():
        cfg = load_config(folder)
        assert cfg.name == name
        assert select_versions(cfg, folder) == [1]
    assert load_config(models["digits_ensemble"]).is_ensemble
    assert load_config(models["accumulator"]).sequence_batching["state"][0]["input_name"] == "SUM_IN"
