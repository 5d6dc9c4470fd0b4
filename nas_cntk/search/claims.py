"""Claims: which trial scores an architecture, decided by one write to the study's own database.

A trial claims its architecture by inserting (study, architecture hash) into a table keyed on that pair,
beside Optuna's tables: of workers that propose the same architecture at the same instant, the database
lets one insert through and refuses the others, which find the winner's row. A claim stays with the trial
that scored the architecture; a failed trial's (its process died, it was interrupted, its kernel failed)
passes to the next trial that proposes the architecture (as a rule its retry, which workers take before
sampling anything new), by an update that only one worker can make.
"""
from __future__ import annotations

import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from nas_cntk.search.stores import created_safely

TABLE = sa.Table("nas_cntk_claims", sa.MetaData(),
                 sa.Column("study_id", sa.Integer, primary_key=True),
                 sa.Column("arch_hash", sa.String(64), primary_key=True),
                 sa.Column("trial_number", sa.Integer, nullable=False))


class Claims:
    """The architectures claimed in one study of an Optuna RDB storage."""

    def __init__(self, storage: RDBStorage, study_id: int):
        self.storage, self.study_id, self.engine = storage, study_id, storage.engine
        created_safely(lambda: TABLE.metadata.create_all(self.engine))

    def claim(self, arch_hash: str, number: int) -> int:
        """Claim ``arch_hash`` for trial ``number``: returns the trial that holds it, ``number`` if it won."""
        key = (TABLE.c.study_id == self.study_id) & (TABLE.c.arch_hash == arch_hash)
        while True:
            try:
                with self.engine.begin() as connection:
                    connection.execute(TABLE.insert().values(study_id=self.study_id, arch_hash=arch_hash,
                                                             trial_number=number))
                return number
            except sa.exc.IntegrityError:  # claimed already, or by another worker at this instant
                pass
            with self.engine.begin() as connection:
                holder = connection.execute(sa.select(TABLE.c.trial_number).where(key)).scalar_one()
                if not self._failed(holder):
                    return holder
                taken = connection.execute(TABLE.update().where(key & (TABLE.c.trial_number == holder))
                                           .values(trial_number=number)).rowcount
            if taken:
                return number

    def holders(self) -> dict[str, int]:
        """Every claimed architecture with the trial that holds it."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(TABLE.c.arch_hash, TABLE.c.trial_number)
                                      .where(TABLE.c.study_id == self.study_id))
            return dict(rows.all())

    def _failed(self, number: int) -> bool:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self.storage.get_trial(trial_id).state == TrialState.FAIL
