"""pandas CSVDataset whose save goes to a temporary file, then is renamed into place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kedro_datasets.pandas import CSVDataset

from nuclei_pipeline.datasets.atomic import write_atomically


class AtomicCSVDataset(CSVDataset):
    """Same as ``pandas.CSVDataset`` (local files, not versioned), but an interrupted
    save never leaves a half-written CSV: the old file stays until the new one is complete."""

    def save(self, data: pd.DataFrame) -> None:
        write_atomically(Path(self._filepath), lambda temporary: data.to_csv(temporary, **self._save_args))
