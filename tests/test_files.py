import os

import pytest
import torch

from pir import files
from pir.data import text


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "report.json"
    files.write_json(target, {"r_mean": 1.0})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "r_mean": 1.0\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_equal_checkpoints_are_equal_bytes(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    files.save_torch(tmp_path / "a.pt", state)
    files.save_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert files.sha256_file(tmp_path / "a.pt") == files.sha256_file(tmp_path / "b.pt")
    assert files.load_torch(tmp_path / "a.pt")["epoch"] == 3


def test_checkpoint_errors_are_one_line_and_name_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt: not a loadable checkpoint") as error:
        files.load_torch(bad)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        files.load_torch(tmp_path / "missing.pt")


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"callback": print}, path)   # arbitrary objects need weights_only=False
    with pytest.raises(ValueError, match="evil.pt"):
        files.load_torch(path)


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o002], indirect=True)
def test_atomic_dir_follows_the_umask(tmp_path, umask):
    with files.atomic_dir(tmp_path / "out" / "tokenizer") as tmp:
        (tmp / "sub").mkdir()
        assert tmp.stat().st_mode & 0o777 == 0o777 & ~umask   # tempfile.mkdtemp would give 0700
    assert (tmp_path / "out" / "tokenizer").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "tokenizer"
    with files.atomic_dir(target) as tmp:
        (tmp / "vocab.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_dir(target) as tmp:
            (tmp / "vocab.txt").write_text("half")
            raise RuntimeError("killed")
    assert (target / "vocab.txt").read_text() == "old"
    with files.atomic_dir(target) as tmp:
        (tmp / "vocab.txt").write_text("new")
    assert (target / "vocab.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]   # no temp or set-aside folder left


@pytest.mark.parametrize("umask", [0o022], indirect=True)
def test_tokenizer_folder_follows_the_umask(tmp_path, umask):
    class Tokenizer:   # what save_tokenizer needs of a transformers tokenizer
        def save_pretrained(self, folder):
            (folder / "vocab.txt").write_text("[PAD]\n")

    out = text.save_tokenizer(Tokenizer(), tmp_path / "fetch" / "tokenizer")
    assert out.stat().st_mode & 0o777 == 0o755 and (out / "vocab.txt").read_text() == "[PAD]\n"
