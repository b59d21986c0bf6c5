"""A JSON file read and written as one of the project's typed definitions."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from kedro_datasets.json import JSONDataset
from pydantic import BaseModel

from nuclei_pipeline.parameters import ParameterError


def _definition(name: str) -> type[BaseModel]:
    """The class a dotted path names, e.g. ``nuclei_pipeline.parameters.ModelSpec``."""
    module, _, attribute = name.rpartition(".")
    try:
        definition = getattr(import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"schema: no class {name!r} ({error})") from error
    if not (isinstance(definition, type) and issubclass(definition, BaseModel) and hasattr(definition, "from_conf")):
        raise ValueError(f"schema: {name!r} is not one of the project's typed definitions")
    return definition


class TypedJSONDataset(JSONDataset):
    """``JSONDataset`` whose content is a typed definition of ``nuclei_pipeline.parameters``.

    ``schema`` (dotted path, e.g. ``nuclei_pipeline.parameters.ModelSpec``) turns the
    loaded JSON into that definition (``from_conf``: a bad file is refused with the
    key it gets wrong) and checks what is saved, a typed object or a mapping, so no
    node converts or checks the file itself. Without ``schema`` it is a plain ``JSONDataset``.
    """

    def __init__(self, *, schema: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._schema = schema
        self._definition = _definition(schema) if schema else None

    def _typed(self, data: Any, action: str) -> Any:
        try:
            return self._definition.from_conf(data)
        except ParameterError as error:
            raise ParameterError(f"{action} {self._filepath}, a {self._definition.__name__} file:\n- {error}") from None

    def load(self) -> Any:
        data = super().load()
        return data if self._definition is None else self._typed(data, "cannot read")

    def save(self, data: Any) -> None:
        if self._definition is not None and not isinstance(data, self._definition):
            data = self._typed(data, "refused to write")
        super().save(data.model_dump() if isinstance(data, BaseModel) else data)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "schema": self._schema}
