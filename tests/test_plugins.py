"""Methods from outside the tree: the entry point of examples/plugin and ``module:Class`` names."""
import os
from importlib.metadata import entry_points

import pytest

import methods
from bench import config
from bench.protocol import run_cell
from bench.run import main as run_main
from methods.testing import check_adapter

from .test_methods import meta_unet

PLUGIN_INSTALLED = any(ep.name == "plugin_example" for ep in entry_points(group=methods.ENTRY_POINT_GROUP))
needs_plugin = pytest.mark.skipif(not PLUGIN_INSTALLED and not os.environ.get("CI"),
                                  reason="examples/plugin is not installed (bash scripts/test.sh installs it)")


@needs_plugin
def test_entry_point_plugin_is_a_method_like_any_other(tmp_path):
    assert "plugin_example" in methods.available()
    check_adapter("plugin_example")
    assert methods.build("plugin_example").attach(meta_unet("cifar10")).ppc() == 3_840  # sum of c_out, 40-54
    with pytest.raises(methods.MethodError, match="scale must be positive"):
        methods.build("plugin_example", scale=0.0)
    cfg = config.resolve({"dataset": "digits", "split": "6-2", "method": {"name": "plugin_example"}, "scale": "smoke",
                          "progress": False, "workdir": str(tmp_path)})
    rec = run_cell(cfg, log=lambda *_: None)
    assert rec.cell.method == "plugin_example" and rec.ppc > 0 and len(rec.accuracy) == 3


def test_module_class_method_on_the_command_line(tmp_path, capsys):
    check_adapter("tests.plugins:OutputScale")
    out = tmp_path / "rec.json"
    assert run_main(["dataset=digits", "split=6-2", "method=tests.plugins:OutputScale", "scale=smoke",
                     f"workdir={tmp_path}", f"out={out}", "progress=false"]) == 0
    from bench.record import Record

    rec = Record.load(out)
    assert rec.cell.method == "tests.plugins:OutputScale" and rec.ppc > 0


@pytest.mark.parametrize("name,message", [
    ("tests.plugins:Nope", "module 'tests.plugins' has no 'Nope'"),
    ("tests.plugins:NotAnAdapter", "is not a subclass of methods.base.Adapter"),
    ("no_such_module_xyz:Thing", "cannot import 'no_such_module_xyz'"),
    (":Thing", "use package.module:ClassName"),
])
def test_bad_class_paths_are_one_line(name, message, capsys):
    assert run_main([f"method={name}", "scale=smoke", "dataset=digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_strategy_typo_suggests_the_strategy(capsys):
    assert run_main(["method=multitask_clasifier", "scale=smoke"]) == 2
    assert "did you mean the strategy 'multitask_classifier'" in capsys.readouterr().err


def test_grouped_conv_is_an_option_not_an_environment_variable():
    m = methods.build("funlora", grouped_conv=True)
    assert m.options["grouped_conv"] is True
    with pytest.raises(methods.MethodError, match="grouped_conv"):
        methods.build("funlora", grouped_conv="maybe")
