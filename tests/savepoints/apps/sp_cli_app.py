"""`sp_cli_app:app` for the command-line tests (`kstream run`, `kstream savepoint`): the word
count of sp_apps, configured from SP_APP_ID, SP_BOOTSTRAP, SP_INPUT, SP_OUTPUT, SP_STATE_DIR."""

from __future__ import annotations

import os
from pathlib import Path

from sp_apps import wordcount

app = wordcount(os.environ["SP_APP_ID"], os.environ["SP_BOOTSTRAP"], os.environ["SP_INPUT"],
                os.environ["SP_OUTPUT"], Path(os.environ["SP_STATE_DIR"]))
