"""Self-describing model checkpoints, loaded without running any pickled code.

One file per model, written by ``torch.save`` and read by ``torch.load(weights_only=True)``
(safetensors is not a dependency). The file holds only tensors and plain data::

    {"format": "geomorph-bids-checkpoint",   # marker
     "format_version": 1,                    # int, see FORMAT_VERSION
     "metadata": "<JSON text>",              # CheckpointMeta.to_dict(), a str
     "metadata_sha256": "<hex>",             # SHA-256 of the JSON text's UTF-8 bytes
     "state_dict": {name: Tensor, ...}}      # CPU, contiguous, compact

``torch.load(weights_only=True)`` unpickles with an allow-list (tensors, str, int, float,
dict, list, ...): a file that names any other callable (``os.system``, ...) is refused before
anything runs. The metadata records what the model needs to be used correctly (template,
hemisphere handling, ordered input channels, their normalisation, the network config) and how
it was made (training provenance), plus the SHA-256 of the weights; the metadata text has its
own SHA-256. Both are checked on every load (:func:`read_metadata` checks the metadata's only),
so a changed byte anywhere that matters is an error, never a silently different model.

Errors about a file are :class:`geomorph_bids.errors.InputError` (a ``ValueError``) on one
line naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import pickle
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import geomorph_bids
from geomorph_bids.errors import InputError
from geomorph_bids.io.atomic import chmod_if_supported, file_mode, flush_to_disk
from geomorph_bids.io.limits import CHECKPOINT_MAX_BYTES, check_size, human_bytes
from geomorph_bids.model.keys import check_keys
from geomorph_bids.model.normalise import NormalisationSpec
from geomorph_bids.io.quiet import quiet_warnings

__all__ = ["FORMAT", "FORMAT_VERSION", "HEMISPHERES", "CheckpointMeta", "TrainingProvenance",
           "save_checkpoint", "convert_checkpoint", "load_checkpoint", "read_metadata", "check_compatible",
           "weights_sha256", "current_git_commit"]

#: Marker stored in every checkpoint.
FORMAT = "geomorph-bids-checkpoint"
#: Version of the file layout written by this code (readers accept ``SUPPORTED_VERSIONS``).
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: Hemisphere handling: trained on left or right only; ``"LR-mirrored"``: a left-hemisphere
#: model that registers right hemispheres mirrored (x -> -x) into it; ``"LR"``: trained on both.
HEMISPHERES = ("L", "R", "LR-mirrored", "LR")


def _json_copy(value: Any, what: str) -> Any:
    """A deep copy through strict JSON (tuples become lists); ValueError if not JSON-able."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON-compatible (str/int/float/bool/None, lists, "
                         f"dicts with str keys): {e}") from None


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class TrainingProvenance:
    """How a model was trained (recorded in its checkpoint and model card).

    ``command``: the exact command line; ``seed``: the random seed; ``data``: a description of
    the training data; ``wall_time_s``: training wall time in seconds; ``git_commit``: the
    source commit if known; ``date``: ISO 8601 UTC (defaults to now); ``extra``: any other
    JSON-compatible facts (device, epochs, final validation loss, ...).
    """

    command: str = ""
    seed: int | None = None
    data: str = ""
    wall_time_s: float | None = None
    git_commit: str | None = None
    date: str = field(default_factory=_utc_now)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("command", "data", "date"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"provenance {name} must be a string, got {getattr(self, name)!r}")
        seed, wall = self.seed, self.wall_time_s
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
                raise ValueError(f"provenance seed must be an integer or None, got {seed!r}")
            object.__setattr__(self, "seed", int(seed))
        if wall is not None:
            if isinstance(wall, bool) or not isinstance(wall, numbers.Real) \
                    or not 0 <= float(wall) < float("inf"):
                raise ValueError(f"provenance wall_time_s must be a finite number >= 0, got {wall!r}")
            object.__setattr__(self, "wall_time_s", float(wall))
        if self.git_commit is not None and not isinstance(self.git_commit, str):
            raise ValueError(f"provenance git_commit must be a string or None, "
                             f"got {self.git_commit!r}")
        extra = _json_copy(dict(self.extra) if isinstance(self.extra, Mapping) else self.extra,
                           "provenance extra")
        if not isinstance(extra, dict):
            raise ValueError("provenance extra must be a mapping")
        object.__setattr__(self, "extra", extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse: :meth:`from_dict`)."""
        return {"command": self.command, "seed": self.seed, "data": self.data,
                "wall_time_s": self.wall_time_s, "git_commit": self.git_commit, "date": self.date,
                "extra": _json_copy(self.extra, "provenance extra")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainingProvenance":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "provenance")
        return cls(**dict(d))


def _default_version() -> str:
    return geomorph_bids.__version__


@dataclass(frozen=True, eq=True)
class CheckpointMeta:
    """Everything a checkpoint says about its model besides the weights.

    ``name``: model id used in messages (e.g. ``"sulc-fsLR"``); ``template``: template id the
    model registers to (``"fsLR"``, ``"fsaverage"``, ...); ``hemisphere``: one of
    :data:`HEMISPHERES`; ``channels``: ordered input channel names (``("sulc",)``,
    ``("sulc", "curv", "myelin")``); ``config``: opaque JSON-compatible dict from the caller
    (``{"network": {...}, "labels": {...}, ...}``); ``normalisation``: how inputs are
    normalised; ``provenance``: how it was trained. ``package_version``, ``format_version`` and
    ``weights_sha256`` are filled in by :func:`save_checkpoint` (and read back on load).
    """

    name: str
    template: str
    hemisphere: str
    channels: tuple[str, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    normalisation: NormalisationSpec = field(default_factory=NormalisationSpec)
    provenance: TrainingProvenance = field(default_factory=TrainingProvenance)
    package_version: str = field(default_factory=_default_version)
    format_version: int = FORMAT_VERSION
    weights_sha256: str | None = None

    __hash__ = None  # type: ignore[assignment]  # holds a dict

    def __post_init__(self) -> None:
        for name in ("name", "template", "package_version"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip() or "\n" in v:
                raise ValueError(f"checkpoint {name} must be a non-empty one-line string, got {v!r}")
        if self.hemisphere not in HEMISPHERES:
            raise ValueError(f"checkpoint hemisphere must be one of {', '.join(HEMISPHERES)}, "
                             f"got {self.hemisphere!r}")
        if isinstance(self.channels, str) or not isinstance(self.channels, Sequence):
            raise ValueError(f"checkpoint channels must be a sequence of names, got {self.channels!r}")
        channels = tuple(self.channels)
        if not channels or not all(isinstance(c, str) and c.strip() and c == c.strip() for c in channels):
            raise ValueError(f"checkpoint channels must be non-empty names, got {list(channels)!r}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"checkpoint channels must be unique, got {list(channels)!r}")
        object.__setattr__(self, "channels", channels)
        if not isinstance(self.config, Mapping):
            raise ValueError(f"checkpoint config must be a mapping, got {type(self.config).__name__}")
        object.__setattr__(self, "config", _json_copy(dict(self.config), "checkpoint config"))
        for name, kind in (("normalisation", NormalisationSpec), ("provenance", TrainingProvenance)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, kind.from_dict(value))
            elif not isinstance(value, kind):
                raise ValueError(f"checkpoint {name} must be a {kind.__name__} or a dict, "
                                 f"got {value!r}")
        if isinstance(self.format_version, bool) or not isinstance(self.format_version, int):
            raise ValueError(f"checkpoint format_version must be an integer, got {self.format_version!r}")
        sha = self.weights_sha256
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                    and all(c in "0123456789abcdef" for c in sha)):
            raise ValueError(f"checkpoint weights_sha256 must be 64 lowercase hex digits, got {sha!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse: :meth:`from_dict`)."""
        return {"format_version": self.format_version, "package_version": self.package_version,
                "name": self.name, "template": self.template, "hemisphere": self.hemisphere,
                "channels": list(self.channels), "config": _json_copy(self.config, "config"),
                "normalisation": self.normalisation.to_dict(),
                "provenance": self.provenance.to_dict(), "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CheckpointMeta":
        """Inverse of :meth:`to_dict`; unknown or missing required keys raise ValueError."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "checkpoint metadata",
                   required=("name", "template", "hemisphere", "channels"))
        return cls(**dict(d))

    def summary(self) -> str:
        """One line for model listings, e.g. ``sulc-fsLR: template fsLR, hemisphere ...``."""
        p = self.provenance
        return (f"{self.name}: template {self.template}, hemisphere {self.hemisphere}, channels "
                f"[{', '.join(self.channels)}], geomorph-bids {self.package_version}"
                + (f", trained {p.date}" if p.date else ""))


# ---------------------------------------------------------------------------------------------
# weights

def _clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, compact copies (a view would otherwise save its whole storage)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    out: dict[str, torch.Tensor] = {}
    for k, t in state_dict.items():
        if not isinstance(k, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict entries must be str -> Tensor, got {k!r} -> {type(t).__name__}")
        if t.layout != torch.strided or t.is_quantized:
            raise TypeError(f"state_dict tensor {k!r} must be a dense (strided) tensor, got {t.layout}")
        out[k] = t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    return out


def convert_checkpoint(path: str | Path, dtype: str = "bfloat16") -> Path:
    """Rewrite a checkpoint with its floating-point weights stored as ``dtype`` (``"bfloat16"``,
    ``"float16"`` or ``"float32"``), in place and atomically; metadata is kept (its weights
    SHA-256 is recomputed). Networks load such weights into float32 parameters. Returns ``path``."""
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    state, meta = load_checkpoint(path)
    state = {k: (v.to(dtypes[dtype]) if v.is_floating_point() else v) for k, v in state.items()}
    return save_checkpoint(path, state, meta)


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the weights: names (sorted), dtypes, shapes and raw bytes of each tensor.

    Independent of the device and of the mapping's order; any changed bit changes it.
    """
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().to("cpu").contiguous()
        h.update(f"{k}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def current_git_commit(path: str | Path | None = None) -> str | None:
    """The git commit (40 hex digits) of the repository holding ``path`` (default: this
    package's source), or None when it is not in a git checkout, git is absent, or the repository
    does not track ``path``'s files: a package installed from a wheel into a virtual environment
    inside some other repository (``project/.venv``) is not that repository's code."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                           text=True, timeout=10, check=False)
        tracked = subprocess.run(["git", "-C", str(where), "ls-files", "--error-unmatch", "--", "."],
                                 capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = r.stdout.strip()
    return sha if r.returncode == 0 and len(sha) == 40 and tracked.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# files

def save_checkpoint(path: str | Path, state_dict: Mapping[str, torch.Tensor],
                    meta: CheckpointMeta) -> Path:
    """Write ``state_dict`` and ``meta`` to ``path`` atomically (temp file + ``os.replace``).

    The stored metadata gets this package's version, the current format version and the
    weights' SHA-256. Parent directories are created. Returns the path written. Tensors may
    live on any device; they are stored on CPU (float32: 4 bytes per parameter plus a few KB).
    """
    if not isinstance(meta, CheckpointMeta):
        raise TypeError(f"meta must be a CheckpointMeta, got {type(meta).__name__}")
    path = Path(path)
    tensors = _clean_state_dict(state_dict)
    meta = dataclasses.replace(meta, package_version=geomorph_bids.__version__,
                               format_version=FORMAT_VERSION, weights_sha256=weights_sha256(tensors))
    text = json.dumps(meta.to_dict(), allow_nan=False, sort_keys=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": text,
               "metadata_sha256": hashlib.sha256(text.encode()).hexdigest(), "state_dict": tensors}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            flush_to_disk(f.fileno())  # carries on where the file system does no fsync (s3fs)
        chmod_if_supported(tmp, file_mode())  # as open() would (umask 002: 0664); SMB, FUSE: the mount decides
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _first_line(e: BaseException, limit: int = 160) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _torch_load(path: Path, map_location: Any, mmap: bool) -> Any:
    if not path.exists() and not path.is_symlink():
        raise InputError("checkpoint file not found", path=path)
    check_size(path, CHECKPOINT_MAX_BYTES, "checkpoint")  # a regular file of a plausible size
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # is_zipfile itself raises on some damaged end records (multi-disk)
        is_zip = False
    if not is_zip:  # torch.save's format; legacy pickles are never unpickled
        raise InputError("not a readable checkpoint (truncated or corrupted?): not a zip archive "
                         "as written by torch.save", path=path)
    try:  # the sizes the archive declares, before torch reads a record
        with zipfile.ZipFile(path) as archive:
            declared = sum(max(0, info.file_size) for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"not a readable checkpoint (truncated or corrupted?): {_first_line(e)}",
                         path=path) from None
    if declared > CHECKPOINT_MAX_BYTES:
        raise InputError(f"checkpoint declares {human_bytes(declared)} of content, more than any checkpoint "
                         f"geomorph-bids accepts ({human_bytes(CHECKPOINT_MAX_BYTES)})", path=path)
    try:
        with quiet_warnings(message="Detected pickle protocol"):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        why = next((ln.strip() for ln in str(e).splitlines()
                    if "GLOBAL" in ln or "nsupported" in ln), _first_line(e))
        why = why.split(". Please use")[0].rstrip(".")  # drop torch's advice to allow-list it
        raise InputError("refused to load checkpoint: it holds Python objects other than "
                         f"tensors and plain data, which could run code ({why})", path=path) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, ValueError... on damaged files
        raise InputError("not a readable checkpoint (truncated or corrupted?): "
                         f"{type(e).__name__}: {_first_line(e)}", path=path) from None


def _parse(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Validate the loaded payload's structure and metadata (not the hash)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InputError(f"not a geomorph-bids checkpoint (no {FORMAT!r} marker)", path=path)
    version = obj.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"checkpoint has no valid format version (got {version!r})", path=path)
    if version not in SUPPORTED_VERSIONS:
        raise InputError(f"checkpoint format version {version} is not supported by geomorph-bids "
                         f"{geomorph_bids.__version__} (reads {', '.join(map(str, SUPPORTED_VERSIONS))}); "
                         + ("upgrade geomorph-bids" if version > FORMAT_VERSION else "re-save it"),
                         path=path)
    text, tensors = obj.get("metadata"), obj.get("state_dict")
    if not isinstance(text, str):
        raise InputError("checkpoint metadata missing", path=path)
    try:
        text_ok = hashlib.sha256(text.encode()).hexdigest() == obj.get("metadata_sha256")
    except UnicodeError:
        text_ok = False
    if not text_ok:
        raise InputError("checkpoint metadata does not match its sha256: the file is corrupted "
                         "or was modified", path=path)
    try:
        meta = CheckpointMeta.from_dict(json.loads(text))
    except (ValueError, TypeError) as e:
        raise InputError(f"invalid checkpoint metadata: {_first_line(e)}", path=path) from None
    if meta.format_version != version:
        raise InputError(f"checkpoint metadata says format version {meta.format_version}, "
                         f"file says {version}", path=path)
    if meta.weights_sha256 is None:
        raise InputError("checkpoint metadata lacks the weights' sha256", path=path)
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in tensors.items()):
        raise InputError("checkpoint state_dict is missing or holds non-tensors", path=path)
    return tensors, meta


def load_checkpoint(path: str | Path, map_location: Any = "cpu",
                    ) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a checkpoint safely: ``(state_dict, meta)``; tensors on ``map_location``.

    Raises :class:`InputError` (one line naming the file) for a missing, truncated or
    corrupted file, an unsupported format version, weights that do not match their SHA-256,
    or a file that would need arbitrary unpickling (refused; nothing in it is executed).
    """
    path = Path(path)
    tensors, meta = _parse(path, _torch_load(path, map_location, mmap=False))
    sha = weights_sha256(tensors)
    if sha != meta.weights_sha256:
        raise InputError(f"checkpoint weights do not match their sha256 (stored "
                         f"{meta.weights_sha256[:12]}..., computed {sha[:12]}...): the file is "
                         "corrupted or was modified", path=path)
    return tensors, meta


def read_metadata(path: str | Path) -> CheckpointMeta:
    """Only the metadata of a checkpoint (the weights are memory-mapped, not read or hashed).

    Same errors as :func:`load_checkpoint` except the SHA-256 check.
    """
    path = Path(path)
    return _parse(path, _torch_load(path, "cpu", mmap=True))[1]


def check_compatible(meta: CheckpointMeta, channels: Sequence[str], template: str, *,
                     hemi: str | None = None) -> None:
    """Raise a one-line ``ValueError`` unless the model takes exactly these input ``channels``
    (same names, same order) for ``template`` (and, if given, hemisphere ``hemi``: "L"/"R")."""
    have = [str(c) for c in channels]
    want = list(meta.channels)
    if have != want or template != meta.template:
        hint = []
        if template != meta.template:
            hint.append(f"template differs: {template!r} vs {meta.template!r}")
        if sorted(have) == sorted(want) and have != want:
            hint.append(f"same channels in another order: give them as [{', '.join(want)}]")
        else:
            missing = [c for c in want if c not in have]
            extra = [c for c in have if c not in want]
            if missing:
                hint.append(f"missing: {', '.join(missing)}")
            if extra:
                hint.append(f"not used by the model: {', '.join(extra)}")
        raise ValueError(f"model {meta.name!r} expects channels [{', '.join(want)}] for template "
                         f"{meta.template}; input has [{', '.join(have)}] for template {template}"
                         + (f" ({'; '.join(hint)})" if hint else ""))
    if hemi is not None:
        if hemi not in ("L", "R"):
            raise ValueError(f"hemi must be 'L' or 'R', got {hemi!r}")
        if meta.hemisphere in ("L", "R") and hemi != meta.hemisphere:
            raise ValueError(f"model {meta.name!r} was trained for hemisphere {meta.hemisphere} "
                             f"only; input is hemisphere {hemi}")
