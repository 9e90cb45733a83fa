"""Checkpoints: exact round trip, safe loading, one-line errors for every damaged file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess

import pytest
import torch

import geomorph_bids
from geomorph_bids.errors import InputError
from geomorph_bids.model.checkpoint import (FORMAT, FORMAT_VERSION, CheckpointMeta, TrainingProvenance,
                                            check_compatible, current_git_commit, load_checkpoint,
                                            read_metadata, save_checkpoint, weights_sha256)
from geomorph_bids.model.normalise import NormalisationSpec


def _state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"enc.0.weight": torch.randn(32, 7, 10, generator=g),
            "enc.0.mu": torch.randn(10, 2, generator=g, dtype=torch.float64),
            "head.bias": torch.randn(600, generator=g).to(torch.bfloat16),
            "steps": torch.tensor(1234, dtype=torch.int64),
            "mask": torch.rand(12, generator=g) > 0.5,
            "empty": torch.zeros(0, 3)}


def _meta(**kw) -> CheckpointMeta:
    base = dict(name="sulc-curv-fsLR", template="fsLR", hemisphere="LR-mirrored",
                channels=["sulc", "curv"],
                config={"network": {"channels": [32, 32, 64, 64, 128], "kernels": 10},
                        "labels": {"control_level": 4, "label_level": 6, "n_labels": 600},
                        "lambda": 0.5},
                normalisation=NormalisationSpec(),
                provenance=TrainingProvenance(command="geomorph-train --seed 7 --out m.pt", seed=7,
                                              data="synthetic from fsLR refsulc, 2000 pairs",
                                              wall_time_s=3600.5, git_commit="a" * 40,
                                              date="2025-01-02T03:04:05+00:00",
                                              extra={"device": "cpu", "epochs": 30}))
    base.update(kw)
    return CheckpointMeta(**base)


@pytest.fixture()
def saved(tmp_path):
    sd, meta = _state_dict(), _meta()
    path = save_checkpoint(tmp_path / "models" / "m.pt", sd, meta)
    return path, sd, meta


def test_round_trip_is_exact(saved, tmp_path):
    path, sd, meta = saved
    assert path == tmp_path / "models" / "m.pt" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left behind
    loaded, lmeta = load_checkpoint(path)
    assert list(loaded) == list(sd)  # same names, same order
    for k, t in sd.items():
        assert loaded[k].dtype == t.dtype and loaded[k].shape == t.shape
        assert loaded[k].device.type == "cpu"
        assert torch.equal(loaded[k].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8))
    sha = weights_sha256(sd)
    assert len(sha) == 64 and lmeta.weights_sha256 == sha
    assert lmeta == dataclasses.replace(meta, weights_sha256=sha)
    assert lmeta.package_version == geomorph_bids.__version__ and lmeta.format_version == FORMAT_VERSION
    assert lmeta.channels == ("sulc", "curv") and lmeta.config["labels"]["n_labels"] == 600
    assert lmeta.provenance.seed == 7 and lmeta.provenance.wall_time_s == 3600.5
    assert CheckpointMeta.from_dict(json.loads(json.dumps(lmeta.to_dict()))) == lmeta
    # metadata alone, without reading the weights
    assert read_metadata(path) == lmeta
    assert lmeta.summary().startswith("sulc-curv-fsLR: template fsLR, hemisphere LR-mirrored, "
                                      "channels [sulc, curv], geomorph-bids ")
    # a model's state dict loads back into the model
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    save_checkpoint(tmp_path / "net.pt", net.state_dict(), _meta())
    net2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net2.load_state_dict(load_checkpoint(tmp_path / "net.pt")[0])
    x = torch.randn(5, 3)
    assert torch.equal(net(x), net2(x))


def test_hash_is_order_and_view_independent(tmp_path):
    sd = _state_dict()
    assert weights_sha256(dict(reversed(list(sd.items())))) == weights_sha256(sd)
    changed = dict(sd)
    w = sd["enc.0.weight"].clone()
    w.view(-1)[100] = torch.nextafter(w.view(-1)[100], torch.tensor(10.0))  # one ulp
    changed["enc.0.weight"] = w
    assert weights_sha256(changed) != weights_sha256(sd)
    # a slice of a big tensor is stored compactly (not its whole storage) and hashes the same
    big = torch.randn(1000, 1000)
    save_checkpoint(tmp_path / "v.pt", {"w": big[:10, :10]}, _meta())
    assert os.path.getsize(tmp_path / "v.pt") < 20_000
    assert weights_sha256({"w": big[:10, :10]}) == weights_sha256({"w": big[:10, :10].clone()})


def test_file_size_of_1m_float32_parameters(tmp_path):
    sd = {f"layer{i}.weight": torch.randn(500, 500) for i in range(4)}  # 1,000,000 parameters
    path = save_checkpoint(tmp_path / "m.pt", sd, _meta())
    size = os.path.getsize(path)
    assert 4_000_000 < size < 4_000_000 + 16_384, size  # 4 bytes each + a few KB of metadata
    loaded, _ = load_checkpoint(path, map_location=torch.device("cpu"))
    assert sum(t.numel() for t in loaded.values()) == 1_000_000


def test_check_compatible_messages():
    meta = _meta()
    check_compatible(meta, ["sulc", "curv"], "fsLR")
    check_compatible(meta, ("sulc", "curv"), "fsLR", hemi="R")  # mirrored model takes R too
    with pytest.raises(ValueError) as e:
        check_compatible(meta, ["sulc"], "fsLR")
    assert str(e.value) == ("model 'sulc-curv-fsLR' expects channels [sulc, curv] for template fsLR; "
                            "input has [sulc] for template fsLR (missing: curv)")
    with pytest.raises(ValueError) as e:
        check_compatible(meta, ["sulc", "curv"], "fsaverage")
    assert str(e.value) == ("model 'sulc-curv-fsLR' expects channels [sulc, curv] for template fsLR; "
                            "input has [sulc, curv] for template fsaverage "
                            "(template differs: 'fsaverage' vs 'fsLR')")
    with pytest.raises(ValueError, match=r"input has \[curv, sulc\] .*another order: give them as "
                                         r"\[sulc, curv\]"):
        check_compatible(meta, ["curv", "sulc"], "fsLR")
    with pytest.raises(ValueError, match=r"missing: curv; not used by the model: myelin"):
        check_compatible(meta, ["sulc", "myelin"], "fsLR")
    left = _meta(hemisphere="L")
    check_compatible(left, ["sulc", "curv"], "fsLR", hemi="L")
    with pytest.raises(ValueError, match="trained for hemisphere L only; input is hemisphere R"):
        check_compatible(left, ["sulc", "curv"], "fsLR", hemi="R")
    assert "\n" not in str(e.value)


def test_meta_validation():
    with pytest.raises(ValueError, match="hemisphere must be one of"):
        _meta(hemisphere="left")
    with pytest.raises(ValueError, match="channels must be unique"):
        _meta(channels=["sulc", "sulc"])
    with pytest.raises(ValueError, match="channels must be non-empty"):
        _meta(channels=[])
    with pytest.raises(ValueError, match="channels must be a sequence"):
        _meta(channels="sulc")
    with pytest.raises(ValueError, match="config must be JSON-compatible"):
        _meta(config={"a": torch.zeros(1)})
    with pytest.raises(ValueError, match="config must be JSON-compatible"):
        _meta(config={"a": float("nan")})
    with pytest.raises(ValueError, match="unknown checkpoint metadata keys: colour"):
        CheckpointMeta.from_dict({**_meta().to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="lacks keys: template"):
        CheckpointMeta.from_dict({"name": "x", "hemisphere": "L", "channels": ["sulc"]})
    with pytest.raises(ValueError, match="seed must be an integer"):
        TrainingProvenance(seed=1.5)
    # the config is copied: later changes by the caller do not leak in
    cfg = {"network": {"kernels": 10}}
    m = _meta(config=cfg)
    cfg["network"]["kernels"] = 3
    assert m.config["network"]["kernels"] == 10
    # dicts for the nested specs are accepted and converted
    m2 = _meta(normalisation={"method": "clip3sd-zscore"}, provenance={"seed": 3, "date": "d"})
    assert m2.normalisation == NormalisationSpec() and m2.provenance.seed == 3
    commit = current_git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_is_recorded_only_for_a_tracked_source(tmp_path):
    """Twenty-third session: geomorph-bids installed from a wheel into ``project/.venv`` (a virtual environment
    inside the user's own repository, ignored by it): ``geomorph-train`` recorded the project's commit as the
    code's in the checkpoint's provenance. Now None there; a folder the repository tracks still gets it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path), *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / ".gitignore").write_text(".venv/\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "analysis.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-q", "-m", "project")
    installed = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "geomorph_bids"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert current_git_commit(installed) is None
    assert current_git_commit(tmp_path / "code") == git("rev-parse", "HEAD")


def test_missing_and_directory(tmp_path, one_line):
    for p, why in ((tmp_path / "nope.pt", "not found"), (tmp_path, "is a folder, not a regular file")):
        for fn in (load_checkpoint, read_metadata):
            with pytest.raises(InputError, match=why) as e:
                fn(p)
            one_line(e, p)


def test_truncated_and_flipped_files(saved, tmp_path, one_line):
    path, _, _ = saved
    data = path.read_bytes()
    half = tmp_path / "half.pt"
    half.write_bytes(data[: len(data) // 2])
    for fn in (load_checkpoint, read_metadata):
        with pytest.raises(InputError, match="truncated or corrupted") as e:
            fn(half)
        one_line(e, half)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"is empty \(0 bytes\)") as e:
        load_checkpoint(empty)
    one_line(e, empty)
    # flip bytes inside the first tensor's data: torch does not notice, the sha256 does
    raw = _state_dict()["enc.0.weight"].numpy().tobytes()
    start = data.index(raw[:64])
    flipped = bytearray(data)
    flipped[start + 100: start + 104] = bytes(b ^ 0xFF for b in flipped[start + 100: start + 104])
    bad = tmp_path / "flip.pt"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="weights do not match their sha256") as e:
        load_checkpoint(bad)
    one_line(e, bad)
    # one character of the metadata JSON ("sulc" -> "sulk"): caught by the metadata sha256
    i = data.index(b'"sulc"')
    bad.write_bytes(data[:i] + b'"sulk"' + data[i + 6:])
    for fn in (load_checkpoint, read_metadata):
        with pytest.raises(InputError, match="metadata does not match its sha256") as e:
            fn(bad)
        one_line(e, bad)


def test_no_byte_flip_gives_a_silently_different_model(saved, tmp_path, one_line):
    """Flip 4 bytes at offsets all over the file: each load either raises one InputError line
    or returns exactly the original (zip fields torch ignores, e.g. timestamps)."""
    path, sd, _ = saved
    data = path.read_bytes()
    ref, ref_meta = load_checkpoint(path)
    p = tmp_path / "damaged.pt"
    outcomes = {"error": 0, "identical": 0}
    for offset in range(0, len(data) - 4, 61):
        damaged = bytearray(data)
        damaged[offset: offset + 4] = bytes(b ^ 0x5A for b in damaged[offset: offset + 4])
        p.write_bytes(bytes(damaged))
        try:
            loaded, meta = load_checkpoint(p)
        except InputError as e:
            assert "\n" not in str(e) and str(p) in str(e)
            outcomes["error"] += 1
            continue
        assert meta == ref_meta and list(loaded) == list(ref), offset
        for k in ref:
            assert torch.equal(loaded[k].reshape(-1).view(torch.uint8),
                               ref[k].reshape(-1).view(torch.uint8)), (offset, k)
        outcomes["identical"] += 1
    assert outcomes["error"] > 0.8 * sum(outcomes.values()), outcomes


def test_tampered_weights_and_metadata(saved, tmp_path, one_line):
    path, _, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.bias"] = payload["state_dict"]["head.bias"] * 2
    tampered = tmp_path / "tampered.pt"
    torch.save(payload, tampered)
    with pytest.raises(InputError, match="weights do not match their sha256") as e:
        load_checkpoint(tampered)
    one_line(e, tampered)
    read_metadata(tampered)  # listing does not hash the weights
    # wrong format versions
    for version, hint in ((FORMAT_VERSION + 1, "upgrade geomorph-bids"), (0, "re-save it")):
        p = tmp_path / f"v{version}.pt"
        torch.save({**torch.load(path, weights_only=True), "format_version": version}, p)
        for fn in (load_checkpoint, read_metadata):
            with pytest.raises(InputError, match=rf"format version {version} is not supported.*{hint}") as e:
                fn(p)
            one_line(e, p)
    # not ours / broken metadata (with a matching metadata sha256: the checks behind it)
    good = torch.load(path, weights_only=True)

    def with_text(text: str) -> dict:
        return {**good, "metadata": text, "metadata_sha256": hashlib.sha256(text.encode()).hexdigest()}

    edited = json.loads(good["metadata"])
    edited["channels"] = ["sulc"]
    cases = {"plain.pt": {"w": torch.ones(3)},
             "badjson.pt": with_text("{not json"),
             "badmeta.pt": with_text(json.dumps({**_meta().to_dict(), "hemisphere": "X"})),
             "nosd.pt": {**good, "state_dict": [1, 2]},
             "edited.pt": {**good, "metadata": json.dumps(edited)},
             "nosha.pt": {k: v for k, v in good.items() if k != "metadata_sha256"}}
    for name, obj in cases.items():
        p = tmp_path / name
        torch.save(obj, p)
        with pytest.raises(InputError) as e:
            load_checkpoint(p)
        msg = one_line(e, p)
        assert {"plain.pt": FORMAT, "badjson.pt": "invalid checkpoint metadata",
                "badmeta.pt": "hemisphere must be one of", "nosd.pt": "state_dict",
                "edited.pt": "metadata does not match its sha256",
                "nosha.pt": "metadata does not match its sha256"}[name] in msg


class _Evil:
    """Unpickling this runs ``os.system`` (creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _EvilBuiltin:
    """Unpickling this calls ``builtins.exec`` to write a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused_without_side_effects(saved, tmp_path, one_line):
    path, _, _ = saved
    marker = tmp_path / "pwned"
    good = torch.load(path, weights_only=True)
    files = {}
    # a real-looking checkpoint with an extra object whose unpickling runs a shell command
    files["evil_zip.pt"] = lambda p: torch.save({**good, "extra": _Evil(marker)}, p)
    # ... hidden in the metadata slot, through a builtin
    files["evil_builtin.pt"] = lambda p: torch.save({**good, "metadata": _EvilBuiltin(marker)}, p)
    # a plain (non-zip) pickle file
    files["evil_plain.pkl"] = lambda p: p.write_bytes(pickle.dumps({"state_dict": _Evil(marker)},
                                                                   protocol=2))
    for name, write in files.items():
        p = tmp_path / name
        write(p)
        assert not marker.exists()
        for fn in (load_checkpoint, read_metadata):
            with pytest.raises(InputError) as e:
                fn(p)
            msg = one_line(e, p)
            assert not marker.exists(), f"{name}: unpickling ran code"
            if name == "evil_plain.pkl":  # not torch's zip format: never unpickled at all
                assert "not a zip archive as written by torch.save" in msg, msg
            else:
                assert "refused to load checkpoint" in msg and "GLOBAL" in msg, msg
                assert ("posix.system" if name == "evil_zip.pt" else "GLOBAL exec") in msg, msg
    # sanity: the payload really is malicious when unpickled unsafely (in a throwaway copy)
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()


def test_atomic_write_keeps_old_file_on_failure(saved, tmp_path):
    path, sd, meta = saved
    before = path.read_bytes()
    with pytest.raises(TypeError, match="str -> Tensor"):
        save_checkpoint(path, {"w": [1.0, 2.0]}, meta)
    with pytest.raises(TypeError, match="CheckpointMeta"):
        save_checkpoint(path, sd, meta.to_dict())
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]
    # overwriting replaces the file with the new one
    save_checkpoint(path, {"w": torch.ones(2)}, dataclasses.replace(meta, name="other"))
    loaded, lmeta = load_checkpoint(path)
    assert list(loaded) == ["w"] and lmeta.name == "other"


@pytest.mark.parametrize("mask, expected", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_a_checkpoint_takes_the_umask_as_every_output_does(tmp_path, mask, expected):
    """``geomorph-train``'s checkpoints were 0644 whatever the umask: a lab's umask 002 did not
    make them group-writable (a colleague could not replace a shared model), and a private umask
    077 made them readable by everyone on the machine. Now 0666 less the umask, as every output."""
    old = os.umask(mask)
    try:
        path = save_checkpoint(tmp_path / "m.pt", _state_dict(), _meta())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == expected
