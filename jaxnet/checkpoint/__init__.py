"""Save and restore training state: ``torch.save(state_dict)`` without pickle.

Layout of a checkpoint directory::

    DIR/step_00000003/arrays/...        arrays, written by orbax-checkpoint
    DIR/step_00000003/manifest.json     format, step, your metadata, and the size
                                        and sha256 of every array and every file
    DIR/.jaxnet-lock                    while a process writes: its host and pid
    DIR/.jaxnet-tmp-<32 hex>/           jaxnet's own work folders, each marked by a
                                        jaxnet-owner.json inside that names it

Contract:

* Any path: relative, ``~``, spaces, non-ASCII; messages show it as given.
* Atomic: built in a work folder, renamed into place when complete. A kill at
  any moment leaves earlier checkpoints intact; a half-written one is never
  listed. A failed save raises one ``CheckpointError`` line and cleans up.
* One writer: ``save`` and ``resume_state`` hold ``lock(directory)``; a second
  writer fails at once with ``CheckpointLockedError`` naming the holder. A
  dead process's lock on this host is recovered; another host's never silently.
* Verified: ``restore`` checks the manifest's schema (size- and depth-capped),
  every file's type, size and sha256 before reading arrays, then every
  array's digest: ``CheckpointCorruptError``. Only arrays and JSON; no pickle.
* Checked against ``like``: structure, shapes, dtypes (``CheckpointMismatchError``).
  Any array may be empty (a zero-size dimension), and a state may have no arrays.
* ``fit``'s resume also checks the metadata it relies on (the epoch is the step;
  each history entry's epoch, run, losses and seconds): a bad one is damaged,
  moved aside for an older intact checkpoint with one line naming the field.
  A checkpoint holding NaN/Inf is refused (``CheckpointNonFiniteError``)
  unless the run passes ``check_finite=False`` too.
* Never overwritten (``CheckpointExistsError``); jaxnet deletes only its own
  marked work folders and what ``keep=`` prunes.
* SIGINT/SIGTERM during a save or restore take effect when it is done.
* Multi-process: one process (process 0) saves and restores alone.

What it offers: ``save``, ``restore``, ``latest_step``, ``all_steps`` and
``load_metadata`` for your own loops; ``resume_state``, ``check_new_run`` and
``lock`` behind ``fit``'s checkpoints; ``check_writable`` to test a folder
before a long run; and the ``Checkpoint…Error`` exceptions, all subclasses of
``CheckpointError``.
"""

# For developers, where things live:
# Files: ``_errors`` (exceptions) · ``_layout`` (paths, step names, listing, work
# folders) · ``_lock`` (the writer lock) · ``_manifest`` (schema, file records,
# verification) · ``_orbax`` (the orbax adapter) · ``_finite`` (which saved values
# are NaN/Inf, by path) · ``_store`` (save, prune, restore, load_metadata,
# check_writable; knows nothing of ``fit``) · ``_runs``
# (``fit``'s protocol: new-run check, resume, epoch metadata, config check).

from ._errors import CheckpointCorruptError as CheckpointCorruptError
from ._errors import CheckpointError as CheckpointError
from ._errors import CheckpointExistsError as CheckpointExistsError
from ._errors import CheckpointLockedError as CheckpointLockedError
from ._errors import CheckpointMismatchError as CheckpointMismatchError
from ._errors import CheckpointNonFiniteError as CheckpointNonFiniteError
from ._errors import CheckpointNotFoundError as CheckpointNotFoundError
from ._layout import all_steps as all_steps
from ._layout import latest_step as latest_step
from ._lock import lock as lock
from ._runs import check_new_run as check_new_run
from ._runs import resume_state as resume_state
from ._store import check_writable as check_writable
from ._store import load_metadata as load_metadata
from ._store import restore as restore
from ._store import save as save

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "CheckpointNonFiniteError",
    "CheckpointNotFoundError",
    "all_steps",
    "check_new_run",
    "check_writable",
    "latest_step",
    "load_metadata",
    "lock",
    "restore",
    "resume_state",
    "save",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
