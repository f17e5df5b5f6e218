"""Savepoints: a consistent copy of an application's state and input positions, as plain
files, restorable into changed code or under another application id (a fork).

Public API::

    create_savepoint(app, DIR, make_archive=False, stop=False) -> Path
        # also App.savepoint(DIR, stop=False): stop=True stops this instance first
    Savepoint.open(DIR, topology=None) -> Savepoint            # .stores, .entries(), .writer()
    SavepointWriter: rename_store, drop_store, map_values, repartition_store, write(DIR)
    restore_savepoint(DIR, app, application_id=None, allow_non_restored_state=False)
    SavepointError

The file format is in kstream.savepoint.format and the README ("Savepoints").
"""

from kstream.savepoint.create import create_savepoint
from kstream.savepoint.format import SavepointError
from kstream.savepoint.manifest import Manifest, OffsetEntry, StoreEntry
from kstream.savepoint.restore import RestorePlan, restore_savepoint
from kstream.savepoint.transform import Savepoint, SavepointWriter

__all__ = ["Manifest", "OffsetEntry", "RestorePlan", "Savepoint", "SavepointError",
           "SavepointWriter", "StoreEntry", "create_savepoint", "restore_savepoint"]
