"""One typed definition per parameter group of ``conf/``.

``conf/base/parameters_*.yml`` is the one place that gives values (defaults
included); these classes say what each value may be. Nodes declare the typed
group in their signature (``training: Training``), and Kedro's parameter
validation builds it from conf before any node of the run starts (every bad
value of every group in one error, each named ``group.key``), so a node reads
``training.epochs``, never ``training.get("epochs", 96)``.

The classes are frozen and refuse unknown keys, so a misspelt ``--params``
key is an error instead of a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nuclei_pipeline.core.images import IMAGE_TYPES

Share = Annotated[float, Field(gt=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=1)]
Size = Annotated[int, Field(ge=0)]

TARGET_CHANNELS = ("mask", "boundary", "touching", "distance")
EXPORTS = ("table_csv", "label_tiff", "imagej_rois", "geojson")


class ParameterError(ValueError):
    """One or more parameters have values the pipelines cannot use."""


class Parameters(BaseModel):
    """A parameter group: strict types (``"3"`` is not 3), no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    group: ClassVar[str]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs):
        """Pydantic's ``model_validate`` (which Kedro calls), its errors as one line per bad value.

        Raises
        ------
        ParameterError
            Listing every bad value by its full name (``training.epochs: …, got 0``).
        """
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            raise ParameterError("\n- ".join(_problems(cls.group, error))) from None

    @classmethod
    def from_conf(cls, values: Parameters | Mapping[str, Any] | None):
        """The typed group from its ``conf`` mapping (an instance is returned as it is)."""
        return values if isinstance(values, cls) else cls.model_validate(dict(values or {}))


class Split(Parameters):
    group: ClassVar[str] = "split"
    val_fraction: Share
    extra_val_fraction: Annotated[float, Field(ge=0, lt=1)]  # of each extra training set, held out of training
    seed: int


class Preprocessing(Parameters):
    """Image → model input; recorded in the trained model's ``model_spec.json``."""

    group: ClassVar[str] = "preprocessing"
    input_mode: Literal["resize", "native"]
    size: Count
    target_channels: Annotated[list[Literal[TARGET_CHANNELS]], Field(min_length=1)]
    invert_light_background: bool
    normalize_percentiles: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=2, max_length=2)] | None

    @field_validator("normalize_percentiles")
    @classmethod
    def _low_below_high(cls, value):
        if value is not None and not value[0] < value[1]:
            raise ValueError("must be [low, high] percentiles with low < high")
        return value


class Postprocessing(Parameters):
    """Probabilities → instances (:func:`nuclei_pipeline.core.postprocess.probabilities_to_labels`)."""

    group: ClassVar[str] = "postprocessing"
    method: Literal["components", "watershed"]
    threshold: Probability
    min_size: Size
    border_channel: Count | None
    border_threshold: Probability
    marker_threshold: Probability
    min_marker_size: Size
    distance_channel: Count | None
    distance_threshold: Probability
    min_mean_probability: Probability


class Tuning(Parameters):
    group: ClassVar[str] = "evaluation.tuning"
    enabled: bool
    strategy: Literal["coordinate", "grid"]
    max_sweeps: Count
    time_budget_minutes: Positive | None
    workers: Count | None
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]]
    pairs: list[Annotated[list[str], Field(min_length=2, max_length=2)]]

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, grid):
        unknown = sorted(set(grid) - set(Postprocessing.model_fields))
        if unknown:
            raise ValueError(f"unknown post-processing key(s) {unknown}; choose from {sorted(Postprocessing.model_fields)}")
        return grid

    @model_validator(mode="after")
    def _pairs_in_grid(self):
        for pair in self.pairs:
            missing = [key for key in pair if key not in self.grid or key == "min_size"]
            if missing:
                raise ValueError(f"pairs: {pair} names {missing}, not a grid key other than min_size "
                                 "(add it to grid or drop the pair)")
        return self


class Evaluation(Parameters):
    group: ClassVar[str] = "evaluation"
    test_time_augmentation: bool
    gallery_size: Count
    tuning: Tuning


class Inference(Parameters):
    group: ClassVar[str] = "inference"
    model: Literal["auto", "shipped", "trained"]
    test_time_augmentation: bool
    resume: bool
    figure_images: Count
    seed: int
    pixel_size_um: Positive | None
    executor: Literal["local", "dask"]
    dask_scheduler: str | None
    dask_workers: Count | None
    exports: list[Literal[EXPORTS]]
    min_confidence: Literal["auto"] | Probability | None
    annotation_queue: Size
    z_stitch_min_iou: Annotated[float, Field(gt=0, le=1)]
    z_min_brightness: Annotated[float, Field(ge=0, lt=1)]
    z_step_um: Positive | None
    track_min_iou: Annotated[float, Field(gt=0, le=1)] | None

    @field_validator("dask_scheduler")
    @classmethod
    def _address(cls, value):
        if value is not None and "://" not in value:
            raise ValueError("must be null or a scheduler address like tcp://host:8786")
        return value

    @field_validator("exports", mode="before")
    @classmethod
    def _joined_exports(cls, value):
        # On the command line Kedro's --params splits at commas: `label_tiff+geojson` or `all`.
        if value is None:
            return []
        if isinstance(value, str):
            return list(EXPORTS) if value == "all" else value.split("+")
        return value


class Prediction(Parameters):
    """How evaluation and inference run the network over an image."""

    group: ClassVar[str] = "prediction"
    tile_size: Count | None
    tile_overlap: Size
    block_size: Count | None
    block_margin: Size
    # An integer stays one (20, not 20.0), so masks keep their prediction keys.
    nucleus_diameter: Literal["auto"] | Annotated[int, Field(gt=0)] | Positive | None
    # Each image is also tried at these factors and kept at the one whose nuclei the model is surest of.
    alternative_scales: list[Annotated[float, Field(gt=0, le=4)]]
    scale_margin: Annotated[float, Field(ge=0, le=1)]

    @field_validator("nucleus_diameter", mode="before")
    @classmethod
    def _diameter(cls, value):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (value is None or value == "auto" or (number and value > 0)):
            raise ValueError("must be null, 'auto' or a positive number of pixels")
        return value

    @model_validator(mode="after")
    def _overlap_inside_tile(self):
        if self.tile_size is not None and self.tile_overlap >= self.tile_size:
            raise ValueError(f"tile_overlap ({self.tile_overlap}) must be smaller than tile_size ({self.tile_size})")
        return self


class Model(Parameters):
    group: ClassVar[str] = "model"
    filters: Annotated[list[Count], Field(min_length=2)]
    dropout: list[Annotated[float, Field(ge=0, lt=1)]] | Annotated[float, Field(ge=0, lt=1)]
    batch_norm: list[bool] | bool

    @model_validator(mode="after")
    def _one_value_per_level(self):
        for name in ("dropout", "batch_norm"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.filters):
                raise ValueError(f"{name} needs one value per level of filters ({len(self.filters)}), "
                                 f"got {len(value)}")
        return self


class Augmentation(Parameters):
    group: ClassVar[str] = "training.augmentation"
    flip: bool
    rotate90: bool
    stain: Probability
    brightness: Probability
    contrast: Probability
    hue: Probability
    grey: Probability
    invert: Probability
    scale: Probability
    extra_zoom: Annotated[list[Positive], Field(min_length=2, max_length=2)] | None

    @field_validator("extra_zoom")
    @classmethod
    def _smallest_first(cls, value):
        if value is not None and not value[0] <= value[1]:
            raise ValueError("must be [smallest, largest] zoom factors with smallest <= largest")
        return value


# The training source of the DSB2018 images (the crops not given to `training.extra_datasets`),
# as named in `model_spec.json`'s `training_sources` and the model card.
DSB_SOURCE = "dsb2018"


class Training(Parameters):
    group: ClassVar[str] = "training"
    epochs: Count
    batch_size: Count
    initial_model: str | None
    learning_rate: Positive
    cosine_decay: bool
    time_budget_minutes: Positive | None
    loss: Literal["binary_crossentropy", "bce_dice"]
    dice_weight: Annotated[float, Field(ge=0)]
    early_stopping_patience: Count
    precision: Literal["auto", "float32", "mixed_bfloat16"]
    seed: int
    type_weights: dict[Literal[IMAGE_TYPES], Positive] | None
    extra_datasets: dict[str, Share] | None
    crop_size: Count
    steps_per_epoch: Count | None
    validation_tiles_per_image: Count | None
    distribution: Literal["mirrored"] | None
    resume: bool
    backup_dir: str
    verbose: Literal[0, 1, 2]
    augmentation: Augmentation | None

    @field_validator("extra_datasets")
    @classmethod
    def _shares_below_one(cls, shares):
        if shares and sum(shares.values()) >= 1:
            raise ValueError("shares must add up to less than 1 (the rest of the crops are DSB2018)")
        return shares

    @property
    def extra_shares(self) -> dict[str, float]:
        """``extra_datasets`` as ``{set name: share}``, empty for the CC0 DSB2018 data alone."""
        return dict(self.extra_datasets or {})


GROUPS: dict[str, type[Parameters]] = {
    cls.group: cls for cls in (Split, Preprocessing, Postprocessing, Evaluation, Inference, Prediction, Model, Training)
}


def _problems(group: str, error: ValidationError) -> list[str]:
    by_name: dict[str, tuple[list[str], str]] = {}
    for detail in error.errors():
        # Union members add their type names to the location; the parameter's name is what a user wrote.
        where = ".".join(str(part) for part in detail["loc"] if not _is_type_tag(part))
        name = f"{group}.{where}" if where else group
        # A whole-group check (nothing to point at) and a missing key show no value.
        given = "" if detail["type"] == "missing" or not where else f", got {detail['input']!r}"
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = f"{group} has no such parameter (misspelt?)"
        messages, _ = by_name.setdefault(name, ([], given))
        messages.append(message)
    # A value no member of a union accepts gets one line: "… or …".
    return [f"{name}: {' or '.join(dict.fromkeys(messages))}{given}" for name, (messages, given) in by_name.items()]


def _is_type_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("literal[", "function-", "nullable[", "constrained-"))
                                      or part in {"float", "int", "str", "bool", "list", "dict", "tuple", "is-instance"}
                                      or "[" in part)


def _message(problems: list[str]) -> str:
    return f"{len(problems)} parameter problem(s), nothing was run:\n- " + "\n- ".join(problems)


def check_parameters(parameters: Mapping[str, Any], groups: Iterable[str]) -> dict[str, Parameters]:
    """The typed groups named in ``groups`` (``training``, ``training.extra_datasets`` → ``training`` …).

    Raises
    ------
    ParameterError
        Listing every bad value of all the groups at once.
    """
    problems, typed = [], {}
    for group in sorted({name.split(".")[0] for name in groups} & set(GROUPS)):
        try:
            typed[group] = GROUPS[group].from_conf(parameters.get(group))
        except ParameterError as error:
            problems.extend(str(error).split("\n- "))
    if problems:
        raise ParameterError(_message(problems))
    return typed


class ConfidenceReference(Parameters):
    """A model's ``confidence_reference.json`` (written by evaluation, not a ``conf`` group): how sure
    the model is on its own validation images, the scale ``inference.min_confidence: auto`` reads.

    ``validation_lower_quartile``: the image confidence three in four validation images reach
    (``null`` when no validation image had a nucleus).
    """

    model_config = ConfigDict(strict=False, extra="allow", frozen=True)
    group: ClassVar[str] = "confidence_reference"
    validation_images: Annotated[int, Field(ge=0)]
    validation_mean: Probability | None
    validation_lower_quartile: Probability | None


class ModelSpec(Parameters):
    """A trained model's ``model_spec.json`` (written by training, not a ``conf`` group): how to prepare images for it.

    Lenient where the ``conf`` groups are strict: files of any version load.
    ``normalize_percentiles`` and ``nucleus_diameter`` are absent from files of
    models trained before they were recorded (``None``: not used); the
    training record's other keys (``best_epoch``, ``training_sources`` …) are
    kept as they are. The catalog reads and writes the file as this class
    (:class:`nuclei_pipeline.datasets.TypedJSONDataset`).
    """

    model_config = ConfigDict(strict=False, extra="allow", frozen=True)
    group: ClassVar[str] = "model_spec"
    input_mode: Literal["resize", "native"]
    size: Count | None  # the model's input size in `resize` mode (null in `native` mode)
    target_channels: Annotated[list[Literal[TARGET_CHANNELS]], Field(min_length=1)]
    invert_light_background: bool
    # As the file gives them (1, not 1.0): inference's prediction key hashes them.
    normalize_percentiles: list[int | float] | None = None
    nucleus_diameter: float | None = None  # median nucleus diameter (px) of the training images

    @model_validator(mode="after")
    def _size_for_resize(self):
        if self.input_mode == "resize" and self.size is None:
            raise ValueError("a model of input_mode resize needs its input size")
        return self
