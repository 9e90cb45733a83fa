"""Batch mode (``--batch-size N``): the participant level without Nipype, for cohorts.

:func:`~geomorph_bids.batch.pipeline.run_batch` schedules the cohort's hemispheres, in chunks of N, onto
worker processes (:mod:`.pool`) that read, register (one vectorised optimisation per chunk),
resample and write each hemisphere (:mod:`.tasks`), with the same functions, names, sidecars,
atomic writes and failure records as the Nipype workflow; participants' reports are built as
they complete. :mod:`.state` keeps the resume records.

This package imports nothing itself: the workers import :mod:`.tasks` alone (no Nipype); the
command line imports :func:`.pipeline.run_batch`.
"""
