"""config.train.compilation_cache: which directory each setting names, a clear error for a bad one,
and a second process loading what the first compiled (also when the first had used another cache)."""

import json
import os
import subprocess
import sys

import pytest

from mofgseg_jax.train.compile_cache import cache_dir_for, enable_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_settings_name_the_jax_variable_then_the_user_cache_then_a_directory(tmp_path):
    assert cache_dir_for("none") is None
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "HOME": str(tmp_path / "home")}
    assert cache_dir_for("auto", env) == str(tmp_path / "jax")
    del env["JAX_COMPILATION_CACHE_DIR"]
    assert cache_dir_for("auto", env) == str(tmp_path / "xdg" / "mofgseg_jax" / "xla")
    assert cache_dir_for("", {}) == os.path.join(os.path.expanduser("~"), ".cache", "mofgseg_jax", "xla")
    assert cache_dir_for(str(tmp_path / "mine"), env) == str(tmp_path / "mine")
    assert cache_dir_for("~/c") == os.path.join(os.path.expanduser("~"), "c")


def test_a_directory_that_cannot_be_made_is_one_line_naming_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"^train\.compilation_cache='.*file/xla': cannot create .*'none'$"):
        enable_compilation_cache(str(blocker / "xla"))
    assert blocker.read_text() == "not a directory"


_PROGRAM = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax import monitoring
from mofgseg_jax.train.compile_cache import enable_compilation_cache

events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
jax.jit(lambda x: x - 1)(np.ones(3, np.float32)).block_until_ready()  # cached in $JAX_COMPILATION_CACHE_DIR
enable_compilation_cache(sys.argv[1])
jax.jit(lambda x: jnp.sin(x) * 2 + 1)(np.ones(7, np.float32)).block_until_ready()
print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def test_a_second_process_loads_the_compiled_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # cache even a tiny program
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "before")  # the cache jax starts with

    def run():
        out = subprocess.run([sys.executable, "-c", _PROGRAM, str(cache)], env=env, capture_output=True,
                             text=True, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run()
    assert first == {"hits": 0, "misses": 2}
    # One program each: the one compiled before the switch stays where jax started, the other went to ours.
    assert len(list((tmp_path / "before").iterdir())) == 1 and len(list(cache.iterdir())) == 1
    assert run() == {"hits": 2, "misses": 0}


def test_a_config_stored_before_the_key_existed_gets_the_default(monkeypatch):
    import ml_collections

    from mofgseg_jax.train import compile_cache

    seen = []
    monkeypatch.setattr(compile_cache, "enable_compilation_cache", lambda setting: seen.append(setting))
    compile_cache.enable_for_config(ml_collections.ConfigDict({"train": {"num_steps": 4}}))
    compile_cache.enable_for_config(ml_collections.ConfigDict({"train": {"compilation_cache": "none"}}))
    assert seen == ["auto", "none"]
