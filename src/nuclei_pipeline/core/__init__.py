"""Pure array code: no Kedro, no file layout, no global state."""
