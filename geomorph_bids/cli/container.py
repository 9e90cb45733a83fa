"""What a run inside our images says about its container.

``$GEOMORPH_CONTAINER`` (set by the Dockerfile and ``singularity.def``) tells that this is our image;
Apptainer and Singularity set ``APPTAINER_CONTAINER`` / ``SINGULARITY_CONTAINER`` inside every
container they start, ``--cleanenv`` and ``--containall`` included, which tells their image from the
Docker one: an HPC user binds with ``apptainer run -B``, never with ``docker run -v`` or ``-u``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from .messages import shell_word

__all__ = ["in_image", "under_apptainer", "container_record", "unbound_hint", "unmapped_owner_note", "with_gpu_flag",
           "OVERFLOW_UID"]

#: the owner a user namespace shows for a file whose owner it does not map (Linux's default
#: ``/proc/sys/kernel/overflowuid``): under Apptainer without setuid, or rootless podman, root's
#: ``/tmp`` and every other user's files belong to ``nobody``
OVERFLOW_UID = 65534

T = TypeVar("T")


def in_image(environ: "os._Environ[str] | dict[str, str] | None" = None) -> bool:
    """Whether this runs inside one of our images (``$GEOMORPH_CONTAINER``)."""
    env = os.environ if environ is None else environ
    return bool(env.get("GEOMORPH_CONTAINER"))


def under_apptainer(environ: "os._Environ[str] | dict[str, str] | None" = None) -> bool:
    """Whether this runs in an Apptainer or Singularity container (their own variables, set inside
    whatever the host's environment)."""
    env = os.environ if environ is None else environ
    return bool(env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER"))


#: image sources that Apptainer/Singularity run (a ``.sif`` or ``.simg`` file is one too)
_APPTAINER_SCHEMES = ("library://", "shub://", "oras://")


def container_record(environ: "os._Environ[str] | dict[str, str] | None" = None) -> dict[str, str] | None:
    """``GeneratedBy``'s ``Container`` of ``dataset_description.json`` (``Type``, ``Tag``) from
    ``$GEOMORPH_CONTAINER``; None outside our images. ``singularity`` inside Apptainer or Singularity
    (:func:`under_apptainer`), for a ``.sif``/``.simg`` file, a ``library://``/``shub://``/``oras://``
    URI or a folder (``apptainer build --sandbox``); else ``docker``. A URI is recorded as it is; a local
    image by its file or folder name alone (the same for every install, and no user's folder in it)."""
    env = os.environ if environ is None else environ
    tag = env.get("GEOMORPH_CONTAINER") or ""
    if not tag:
        return None
    uri = "://" in tag
    local = tag.rstrip("/")
    singularity = (under_apptainer(env) or tag.startswith(_APPTAINER_SCHEMES) or local.endswith((".sif", ".simg"))
                   or (not uri and os.path.isdir(local)))
    return {"Type": "singularity" if singularity else "docker", "Tag": tag if uri else Path(local).name or tag}


def with_gpu_flag(resolve: "Callable[[], T]", environ: "os._Environ[str] | dict[str, str] | None" = None) -> "T":
    """``resolve()`` (a ``--device`` resolved: :func:`~geomorph_bids.engine.device.resolve_device`), its
    :class:`~geomorph_bids.engine.device.NoGpuVisible` line naming, inside our image, the flag that gives the
    container the host's GPU (``docker run --gpus all``; ``apptainer run --nv`` under Apptainer): the generic
    'CUDA is not available' was read as a broken host. Outside the image the error is raised as it is."""
    from ..engine.device import NoGpuVisible

    try:
        return resolve()
    except NoGpuVisible as exc:
        if not in_image(environ):
            raise
        flag = ("apptainer run --nv" if under_apptainer(environ)
                else "docker run --gpus all (the NVIDIA Container Toolkit on the host)")
        text = str(exc).removesuffix("; use device cpu or auto")
        raise NoGpuVisible(f"{text}; this container was given no GPU: run it with {flag}, or use device cpu "
                           "or auto") from None


def unbound_hint(path: str | Path, read_only: bool = True,
                 environ: "os._Environ[str] | dict[str, str] | None" = None) -> str:
    """``; in this container only ...: bind it ...`` for an input folder ``path`` that is not there,
    inside our image: the host's folders are not in the container unless bound (``apptainer run
    --containall`` or ``--cleanenv`` without ``-B``; ``docker run`` without ``-v``), and the line
    ``bids_dir does not exist`` named a folder the user could ``ls`` on the host. Empty outside the
    image, or where something is at ``path``."""
    if not in_image(environ) or os.path.lexists(path):
        return ""
    shown, mode = shell_word(Path(path).absolute()), ":ro" if read_only else ""
    bind = (f"apptainer run -B {shown}:{shown}{mode}, or -B /path/on/host:{shown}{mode}" if under_apptainer(environ)
            else f"docker run -v /path/on/host:{shown}{mode}")
    return f"; in this container only the image's files and the folders bound into it are there: bind it ({bind})"


def unmapped_owner_note(uid: int, example: str = "") -> str:
    """Why a folder belongs to ``nobody`` (``uid`` the :data:`OVERFLOW_UID`): a user namespace shows so
    what belongs to root or to any user it does not map (``example``: one such folder, said after a
    colon). Empty for another ``uid``."""
    if uid != OVERFLOW_UID:
        return ""
    return (f" (uid {OVERFLOW_UID} is how a user namespace, Apptainer without setuid or rootless podman, shows a file "
            f"of root or of any user it does not map{': ' + example if example else ''})")
