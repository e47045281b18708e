"""`import jaxdl` is light and exposes the everyday API: every public name resolves to the object its module
defines, and neither importing jaxdl nor building the training stack imports matplotlib (figures import it)."""

import importlib
import subprocess
import sys

import pytest

import jaxdl


@pytest.mark.parametrize("name", jaxdl.__all__)
def test_every_public_name_is_its_modules_object(name):
    module, _, attribute = jaxdl._PUBLIC[name].partition(":")
    assert getattr(jaxdl, name) is getattr(importlib.import_module(module), attribute or name)
    assert name in dir(jaxdl)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        jaxdl.fitt  # noqa: B018


def test_importing_jaxdl_and_the_training_stack_leaves_matplotlib_unimported():
    code = ("import sys, jaxdl; assert 'jax' not in sys.modules, 'import jaxdl loaded jax'; "
            "import jaxdl.experiment.run, jaxdl.tune, jaxdl.cli; "
            "assert 'matplotlib' not in sys.modules, 'the training stack imported matplotlib'")
    subprocess.run([sys.executable, "-c", code], check=True)
