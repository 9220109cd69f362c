"""The kinds of background task, one handler each (see wiring.Container.worker).

Defined with the tables (service.db.enums), which store them; re-exported here.
"""

from __future__ import annotations

from service.db.enums import TaskKind

__all__ = ["TaskKind"]
