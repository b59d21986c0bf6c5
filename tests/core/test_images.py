import numpy as np
import pytest
import skimage.io

from nuclei_pipeline.core.images import (
    ImageReadError,
    image_type,
    labels_from_masks,
    to_rgb,
    to_uint8,
)
from nuclei_pipeline.datasets.image_files import (
    list_images,
    read_image,
    read_mask,
    read_original_image,
)


@pytest.mark.parametrize(
    "array",
    [
        np.full((5, 6), 7, np.uint8),
        np.full((5, 6, 1), 7, np.uint8),
        np.full((5, 6, 2), 7, np.uint8),
        np.full((5, 6, 3), 7, np.uint8),
        np.full((5, 6, 4), 7, np.uint8),
    ],
)
def test_to_rgb_shapes(array):
    rgb = to_rgb(array)
    assert rgb.shape == (5, 6, 3) and rgb.dtype == np.uint8 and np.all(rgb == 7)


def test_alpha_is_dropped_not_blended():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[..., 3] = 0
    assert np.all(to_rgb(rgba)[..., 0] == 100)


def test_sixteen_bit_is_stretched_to_full_range():
    image = np.array([[1000, 1100], [1200, 1300]], dtype=np.uint16)
    scaled = to_uint8(image)
    assert scaled.dtype == np.uint8 and scaled.min() == 0 and scaled.max() == 255


def test_read_image_png_tif_grey_16bit(tmp_path):
    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    skimage.io.imsave(tmp_path / "a.tif", grey16, check_contrast=False)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 50
    skimage.io.imsave(tmp_path / "b.png", rgba, check_contrast=False)
    a, b = read_image(tmp_path / "a.tif"), read_image(tmp_path / "b.png")
    assert a.shape == b.shape == (8, 8, 3)
    assert a[0, 0, 0] == 0 and a[-1, -1, 0] == 255
    assert np.all(b[..., 1] == 50)


def test_unreadable_file_names_the_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(broken)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_mask(tmp_path / "missing.png")


def test_masks_stored_as_0_255_and_overlap_resolution():
    first = np.zeros((4, 4), bool)
    first[0:2, 0:3] = True
    second = np.zeros((4, 4), bool)
    second[1:3, 2:4] = True
    labels, overlapping = labels_from_masks([first, second], (4, 4))
    assert overlapping == 1
    assert labels[1, 2] == 1  # the shared pixel goes to the first mask
    assert (labels == 2).sum() == 3 and (labels == 1).sum() == 6


def test_mask_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        labels_from_masks([np.zeros((3, 3), bool)], (4, 4))


def test_image_type_from_colour_statistics(nuclei):
    from tests.conftest import make_nuclei

    dark, _ = nuclei
    light, _ = make_nuclei(light_background=True)
    grey_light = np.full((10, 10, 3), 220, np.uint8)
    assert image_type(dark) == "fluorescence"
    assert image_type(light) == "histology"
    assert image_type(grey_light) == "brightfield"


def test_list_images_recursive_and_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["sub/b.TIF", "a.png", "c.jpg", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "c.jpg", "b.TIF"]


def test_real_samples_read(real_train_dir):
    sample = sorted(real_train_dir.iterdir())[0]
    image = read_image(sample / "images" / f"{sample.name}.png")
    masks = [read_mask(p) for p in sorted((sample / "masks").glob("*.png"))]
    labels, _ = labels_from_masks(masks, image.shape[:2])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert labels.max() == len(masks) > 0


def test_a_float_image_with_nan_is_refused_naming_the_file(tmp_path):
    import tifffile

    from nuclei_pipeline.core.images import ImageReadError
    from nuclei_pipeline.datasets.image_files import read_image

    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    values[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "float_nan.tif", values)
    with pytest.raises(ImageReadError, match="float_nan.tif.*NaN"):
        read_image(tmp_path / "float_nan.tif")


def test_one_channel_of_a_multichannel_image_is_read_alone_as_grey_on_its_own_range():
    image = np.zeros((4, 5, 6), np.uint16)
    image[..., 3] = np.arange(20, dtype=np.uint16).reshape(4, 5) * 10 + 500  # 500 … 690
    image[..., 0] = 60000  # another channel's far larger values do not squash it
    grey = to_rgb(image, channel=3)
    assert grey.shape == (4, 5, 3) and np.all(grey[..., 0] == grey[..., 2])
    assert grey[0, 0, 0] == 0 and grey[-1, -1, 0] == 255
    assert np.array_equal(to_rgb(image[..., 3]), grey)
    assert np.array_equal(to_rgb(np.full((3, 3), 9, np.uint8), channel=0), np.full((3, 3, 3), 9, np.uint8))
    with pytest.raises(ValueError, match="nucleus_channel 6 does not exist: the image has 6 channel"):
        to_rgb(image, channel=6)
    with pytest.raises(ValueError, match=r"6 channels: name the one holding the nuclei \(nucleus_channel 0-5\)"):
        to_rgb(image)


@pytest.mark.parametrize(
    ("name", "stack", "options"),
    [
        ("ImageJ hyperstack", (2, 30, 40), {"imagej": True, "metadata": {"axes": "CYX"}}),
        ("OME-TIFF", (1, 5, 1, 30, 40), {"ome": True, "metadata": {"axes": "TCZYX"}}),
        ("plain pages", (5, 30, 40), {}),
        ("channels last", (30, 40, 5), {"photometric": "minisblack", "planarconfig": "contig"}),
        ("plain, channels last", (30, 40, 2), {}),  # tifffile names its axes QYX: 30 pages of 40 × 2
    ],
)
def test_a_multichannel_tiff_comes_channels_last_wherever_it_stores_them(tmp_path, name, stack, options):
    import tifffile

    from nuclei_pipeline.datasets.image_files import read_original_image

    values = np.arange(np.prod(stack), dtype=np.uint16).reshape(stack)
    tifffile.imwrite(tmp_path / "cells.tif", values, **options)
    original = read_original_image(tmp_path / "cells.tif")
    channels = values.reshape(-1, 30, 40) if stack[-1] == 40 else np.moveaxis(values, -1, 0)
    assert original.shape == (30, 40, len(channels))
    for index, plane in enumerate(channels):
        assert np.array_equal(original[..., index], plane)
    last = len(channels) - 1
    assert np.array_equal(read_image(tmp_path / "cells.tif", channel=last), to_rgb(channels[last]))


def test_a_stack_of_planes_is_refused_naming_the_file_and_what_to_do(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "zstack.tif", np.zeros((7, 2, 30, 40), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(ImageReadError, match=r"zstack\.tif: a stack of planes \(axes ZCYX.*projection"):
        read_image(tmp_path / "zstack.tif", channel=0)


@pytest.mark.parametrize(("projection", "dtype"), [("max", np.uint16), ("mean", np.uint16), ("mean", np.uint8)])
def test_a_z_stack_is_read_as_its_projection_whole_or_region_by_region(tmp_path, monkeypatch, projection, dtype):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    # Z, C, Y, X; brighter down the rows, so that a region's own range is not the whole image's
    noise = np.random.default_rng(2).integers(0, 60, (4, 2, 60, 50))
    stack = (noise + 3 * np.arange(60)[:, None]).astype(dtype) * (20 if dtype == np.uint16 else 1)
    tifffile.imwrite(tmp_path / "zstack.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    expected = stack.max(axis=0) if projection == "max" else stack.mean(axis=0, dtype=np.float32)
    expected = np.moveaxis(expected, 0, -1)
    original = image_files.read_original_image(tmp_path / "zstack.tif", projection)
    assert original.dtype == expected.dtype and np.allclose(original, expected)
    rgb = image_files.read_image(tmp_path / "zstack.tif", channel=1, z_projection=projection)
    assert np.array_equal(rgb, to_rgb(expected[..., 1]))
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 20 * 20)
    lazy = image_files.read_image_lazily(tmp_path / "zstack.tif", 1, projection)
    assert isinstance(lazy, image_files.LazyImage) and np.array_equal(lazy[10:40, 5:45], rgb[10:40, 5:45])
    lazy_original = image_files.read_original_lazily(tmp_path / "zstack.tif", projection)
    assert lazy_original.shape == original.shape and np.allclose(lazy_original[7:31, :], original[7:31, :])


def test_only_z_is_projected_and_only_when_asked(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "movie.tif", np.zeros((3, 30, 40), np.uint16), imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "zstack.tif", np.zeros((3, 30, 40), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match=r"movie\.tif: a stack of planes \(axes TYX"):
        read_image(tmp_path / "movie.tif", z_projection="max")
    with pytest.raises(ImageReadError, match=r"zstack\.tif: a stack of planes .* set z_projection to max or mean"):
        read_image(tmp_path / "zstack.tif")
    assert read_image(tmp_path / "zstack.tif", z_projection="max").shape == (30, 40, 3)


@pytest.mark.parametrize(("axes", "projection"), [("TYX", None), ("TCYX", None), ("TZCYX", "max")])
def test_a_time_lapse_is_read_one_time_point_at_a_time_whole_or_region_by_region(tmp_path, monkeypatch, axes,
                                                                                  projection):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    shape = {"TYX": (4, 60, 50), "TCYX": (4, 2, 60, 50), "TZCYX": (4, 3, 2, 60, 50)}[axes]
    movie = (np.random.default_rng(4).integers(0, 300, shape) + 40 * np.arange(4).reshape(4, *[1] * (len(shape) - 1)))
    movie = movie.astype(np.uint16)
    # TCYX compressed in tiles: read region by region through the Zarr store, not a memory map
    compressed = {"tile": (16, 16), "compression": "zlib"} if axes == "TCYX" else {}
    tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True, metadata={"axes": axes}, **compressed)
    assert image_files.count_frames(tmp_path / "movie.tif", projection) == ((4,), "T")
    # frames of z-stacks without a projection cannot be read: the file is one image, refused once
    assert image_files.count_frames(tmp_path / "movie.tif")[0] == ((1,) if projection else (4,))
    channel = None if axes == "TYX" else 1
    for frame in (0, 3):
        expected = movie[frame].max(axis=0) if projection else movie[frame]
        expected = expected if axes == "TYX" else np.moveaxis(expected, 0, -1)
        original = image_files.read_original_image(tmp_path / "movie.tif", projection, frame)
        assert np.array_equal(original, expected)
        rgb = image_files.read_image(tmp_path / "movie.tif", channel, projection, frame)
        assert np.array_equal(rgb, to_rgb(expected, channel=channel))
        monkeypatch.setattr(image_files, "LAZY_PIXELS", 20 * 20)
        lazy = image_files.read_image_lazily(tmp_path / "movie.tif", channel, projection, frame)
        assert isinstance(lazy, image_files.LazyImage) and np.array_equal(lazy[10:40, 5:45], rgb[10:40, 5:45])
        assert lazy._memmappable != bool(compressed)
        lazy_original = image_files.read_original_lazily(tmp_path / "movie.tif", projection, frame)
        assert np.array_equal(lazy_original[7:31, :], original[7:31, :])
        lazy.close()
        lazy_original.close()
        monkeypatch.undo()
    with pytest.raises(ImageReadError, match=r"movie\.tif: no time point 4 \(axes " + axes):
        image_files.read_original_image(tmp_path / "movie.tif", projection, 4)
    with pytest.raises(ImageReadError, match=r"movie\.tif: a stack of planes"):
        image_files.read_original_image(tmp_path / "movie.tif", projection)  # a frame must be named


@pytest.mark.parametrize("compressed", [False, True])
def test_a_z_stack_read_as_planes_gives_each_plane_whole_or_region_by_region(tmp_path, monkeypatch, compressed):
    import tifffile

    from nuclei_pipeline.datasets import image_files
    from nuclei_pipeline.datasets.image_folder import ImageFolderDataset

    stack = np.random.default_rng(5).integers(0, 300, (5, 2, 60, 50)).astype(np.uint16)
    stack += (100 * np.arange(5)).astype(np.uint16)[:, None, None, None]  # each plane its own values
    options = {"tile": (16, 16), "compression": "zlib"} if compressed else {}
    tifffile.imwrite(tmp_path / "cells.tif", stack, imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "ZCYX", "spacing": 0.8, "unit": "um"}, **options)
    tifffile.imwrite(tmp_path / "movie.tif", stack[:3, 0], imagej=True, metadata={"axes": "TYX"})
    assert image_files.count_frames(tmp_path / "cells.tif", "planes") == ((5,), "Z")
    assert image_files.count_frames(tmp_path / "movie.tif", "planes") == ((3,), "T")  # a movie stays a movie
    for plane in (0, 4):
        expected = np.moveaxis(stack[plane], 0, -1)
        assert np.array_equal(image_files.read_original_image(tmp_path / "cells.tif", "planes", plane), expected)
        rgb = image_files.read_image(tmp_path / "cells.tif", 1, "planes", plane)
        assert np.array_equal(rgb, to_rgb(expected, channel=1))
        monkeypatch.setattr(image_files, "LAZY_PIXELS", 20 * 20)
        lazy = image_files.read_image_lazily(tmp_path / "cells.tif", 1, "planes", plane)
        assert isinstance(lazy, image_files.LazyImage) and np.array_equal(lazy[10:40, 5:45], rgb[10:40, 5:45])
        lazy.close()
        monkeypatch.undo()
    with pytest.raises(ImageReadError, match=r"cells\.tif: no plane 5 \(axes ZCYX"):
        image_files.read_original_image(tmp_path / "cells.tif", "planes", 5)
    with pytest.raises(ImageReadError, match=r"cells\.tif: a stack of planes .* name the plane to read"):
        image_files.read_original_image(tmp_path / "cells.tif", "planes")
    originals = ImageFolderDataset(str(tmp_path), original=True, z_projection="planes").load()
    assert sorted(originals) == ["cells_z0000", "cells_z0001", "cells_z0002", "cells_z0003", "cells_z0004",
                                 "movie_t0000", "movie_t0001", "movie_t0002"]
    third = originals["cells_z0002"]()
    assert (third["z_stack"], third["plane"], third["z_step_um"], third["pixel_size_um"]) == ("cells", 2, 0.8, 0.25)
    assert np.array_equal(third["image"], np.moveaxis(stack[2], 0, -1))
    assert originals["movie_t0001"]()["frame"] == 1
    # The network's planes are stretched on the whole stack's range (of the nucleus channel), not each on its own.
    images = ImageFolderDataset(str(tmp_path), nucleus_channel=1, z_projection="planes").load()
    stack_range = (float(stack[:, 1].min()), float(stack[:, 1].max()))
    assert image_files.stack_value_range(tmp_path / "cells.tif", 1) == stack_range
    for plane in (0, 4):
        expected = to_rgb(np.moveaxis(stack[plane], 0, -1), stack_range, channel=1)
        assert np.array_equal(images[f"cells_z{plane:04d}"](), expected)
    assert images["cells_z0000"]().max() < 200 and images["cells_z0004"]().max() == 255


def test_the_folder_lists_its_stacks_planes_from_headers_and_a_file_named_like_a_plane_stays_apart(tmp_path):
    import tifffile
    from kedro.io import DatasetError

    from nuclei_pipeline.datasets.image_folder import ImageFolderDataset

    tifffile.imwrite(tmp_path / "cells.tif", np.zeros((3, 20, 30), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    skimage.io.imsave(tmp_path / "cells_z0003.png", np.zeros((20, 30), np.uint8), check_contrast=False)
    skimage.io.imsave(tmp_path / "still.png", np.zeros((20, 30), np.uint8), check_contrast=False)
    stacks = ImageFolderDataset(str(tmp_path), z_projection="planes", stacks=True).load()
    assert stacks == {"cells": ["cells_z0000", "cells_z0001", "cells_z0002"]}  # not the PNG named like a 4th plane
    assert ImageFolderDataset(str(tmp_path), z_projection="max", stacks=True).load() == {}
    with pytest.raises(DatasetError, match="stacks: true"):
        ImageFolderDataset(str(tmp_path), original=True, stacks=True)


@pytest.mark.parametrize("layout", ["OME CZYX", "OME ZCYX"])
def test_a_plane_is_read_wherever_the_stack_stores_its_channels(tmp_path, monkeypatch, layout):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    stack = np.random.default_rng(6).integers(0, 3000, (2, 4, 40, 30)).astype(np.uint16)  # C, Z, Y, X
    if layout == "OME CZYX":  # ImageJ hyperstacks store Z before C (an ImageJ ZCYX stack: the test above)
        tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata={"axes": "CZYX"}, ome=True)
    else:
        tifffile.imwrite(tmp_path / "s.tif", np.moveaxis(stack, 0, 1), photometric="minisblack",
                         metadata={"axes": "ZCYX"}, ome=True)
    assert image_files.count_frames(tmp_path / "s.tif", "planes") == ((4,), "Z")
    stack_range = (float(stack[1].min()), float(stack[1].max()))
    for plane in (0, 3):
        expected = np.moveaxis(stack[:, plane], 0, -1)
        assert np.array_equal(image_files.read_original_image(tmp_path / "s.tif", "planes", plane), expected)
        monkeypatch.setattr(image_files, "LAZY_PIXELS", 10 * 10)  # region by region, on the stack's range
        lazy = image_files.read_image_lazily(tmp_path / "s.tif", 1, "planes", plane, stack_range)
        assert isinstance(lazy, image_files.LazyImage)
        assert np.array_equal(lazy[5:25, 3:20], to_rgb(expected, stack_range, channel=1)[5:25, 3:20])
        lazy.close()
        monkeypatch.undo()


def test_a_stack_s_range_is_read_again_once_its_file_changes(tmp_path):
    import tifffile

    from nuclei_pipeline.datasets.image_files import cached_stack_value_range

    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.full((3, 10, 10), 100, np.uint16), imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(path, np.arange(300, dtype=np.uint16).reshape(3, 10, 10), imagej=True, metadata={"axes": "ZYX"})
    assert cached_stack_value_range(path) == (0.0, 299.0)
    tifffile.imwrite(path, np.arange(300, dtype=np.uint16).reshape(3, 10, 10) * 2, imagej=True,
                     metadata={"axes": "ZYX"})  # same size, other values
    assert cached_stack_value_range(path) == (0.0, 598.0)


@pytest.mark.parametrize("layout", ["ImageJ TZCYX", "OME TZYX"])
def test_a_time_lapse_of_z_stacks_read_as_planes_is_one_stack_per_time_point(tmp_path, monkeypatch, layout):
    import tifffile

    from nuclei_pipeline.datasets import image_files
    from nuclei_pipeline.datasets.image_folder import ImageFolderDataset

    movie = np.random.default_rng(7).integers(0, 300, (2, 3, 2, 40, 30)).astype(np.uint16)  # T, Z, C, Y, X
    movie[1] *= 10  # the second time point ten times as bright: each stack is stretched on its own range
    if layout == "OME TZYX":
        movie = movie[:, :, 1]
        tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack", ome=True,
                         metadata={"axes": "TZYX", "PhysicalSizeZ": 2.0, "TimeIncrement": 30.0})
    else:
        tifffile.imwrite(tmp_path / "movie.tif", movie, imagej=True,
                         metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um", "finterval": 30.0})
    channel = 1 if movie.ndim == 5 else None
    values = movie[:, :, 1] if movie.ndim == 5 else movie  # the nucleus channel: T, Z, Y, X
    assert image_files.count_frames(tmp_path / "movie.tif", "planes") == ((2, 3), "TZ")
    assert image_files.count_frames(tmp_path / "movie.tif", "max") == ((2,), "T")  # projected: a movie of pictures
    expected = movie[1, 2] if movie.ndim == 4 else np.moveaxis(movie[1, 2], 0, -1)
    assert np.array_equal(image_files.read_original_image(tmp_path / "movie.tif", "planes", (1, 2)), expected)
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 10 * 10)  # region by region too
    lazy = image_files.read_original_lazily(tmp_path / "movie.tif", "planes", (1, 2))
    assert isinstance(lazy, image_files.LazyImage) and np.array_equal(lazy[5:25, 3:20], expected[5:25, 3:20])
    lazy.close()
    monkeypatch.undo()
    for frame, refusal in [(0, r"is a \(time point, plane\) pair, got 0"), ((2, 0), "no time point 2 "),
                           ((0, 3), "no plane 3 "), (None, "a stack of planes")]:
        with pytest.raises(ImageReadError, match=r"movie\.tif: .*" + refusal):
            read_original_image(tmp_path / "movie.tif", "planes", frame)
    originals = ImageFolderDataset(str(tmp_path), original=True, z_projection="planes").load()
    assert sorted(originals) == [f"movie_t{t:04d}_z{z:04d}" for t in range(2) for z in range(3)]
    plane = originals["movie_t0001_z0002"]()
    assert {key: plane[key] for key in ("z_stack", "plane", "z_step_um", "time_lapse", "frame", "frame_interval_s")} \
        == {"z_stack": "movie_t0001", "plane": 2, "z_step_um": 2.0, "time_lapse": "movie", "frame": 1,
            "frame_interval_s": 30.0}
    assert np.array_equal(plane["image"], expected)
    stacks = ImageFolderDataset(str(tmp_path), z_projection="planes", stacks=True).load()
    assert stacks == {f"movie_t{t:04d}": [f"movie_t{t:04d}_z{z:04d}" for z in range(3)] for t in range(2)}
    images = ImageFolderDataset(str(tmp_path), nucleus_channel=channel, z_projection="planes").load()
    for time in range(2):
        stack_range = (float(values[time].min()), float(values[time].max()))
        assert image_files.stack_value_range(tmp_path / "movie.tif", channel, time) == stack_range
        for z in range(3):
            picture = movie[time, z] if movie.ndim == 4 else np.moveaxis(movie[time, z], 0, -1)
            assert np.array_equal(images[f"movie_t{time:04d}_z{z:04d}"](), to_rgb(picture, stack_range, channel))


def test_a_plane_spacing_comes_from_metadata(tmp_path):
    import tifffile

    from nuclei_pipeline.datasets.image_files import count_frames, read_z_step_um

    tifffile.imwrite(tmp_path / "ome.ome.tif", np.zeros((3, 20, 30), np.uint16), photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 500.0, "PhysicalSizeZUnit": "nm"})
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((3, 20, 30), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    assert read_z_step_um(tmp_path / "ome.ome.tif") == 0.5
    assert read_z_step_um(tmp_path / "plain.tif") is None
    assert count_frames(tmp_path / "ome.ome.tif", "planes") == ((3,), "Z")


def test_a_time_lapse_s_frame_interval_comes_from_its_metadata(tmp_path):
    import tifffile

    from nuclei_pipeline.datasets.image_files import count_frames, read_frame_interval_s

    movie = np.zeros((3, 20, 30), np.uint16)
    tifffile.imwrite(tmp_path / "imagej.tif", movie, imagej=True,
                     metadata={"axes": "TYX", "finterval": 1.5, "tunit": "min"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", movie, photometric="minisblack",
                     metadata={"axes": "TYX", "TimeIncrement": 250.0, "TimeIncrementUnit": "ms"})
    tifffile.imwrite(tmp_path / "plain.tif", movie, imagej=True, metadata={"axes": "TYX"})
    skimage.io.imsave(tmp_path / "still.png", movie[0].astype(np.uint8), check_contrast=False)
    assert read_frame_interval_s(tmp_path / "imagej.tif") == 90.0
    assert read_frame_interval_s(tmp_path / "ome.ome.tif") == 0.25
    assert read_frame_interval_s(tmp_path / "plain.tif") is None and read_frame_interval_s(tmp_path / "still.png") is None
    assert [count_frames(tmp_path / name) for name in ("ome.ome.tif", "still.png")] == [((3,), "T"), ((1,), "T")]
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not really")
    assert count_frames(tmp_path / "broken.tif") == ((1,), "T")  # read as one image, whose reading then says what is wrong
    with pytest.raises(ImageReadError, match=r"still\.png: only a TIFF holds time points"):
        read_original_image(tmp_path / "still.png", frame=1)


@pytest.mark.parametrize(
    ("axes", "shape", "channel", "projection"),
    [("CYX", (3, 70, 60), 2, None), ("ZCYX", (3, 2, 70, 60), 1, "max"), ("YXS", (70, 60, 6), 5, None)],
)
def test_compressed_tiled_multichannel_tiffs_read_region_by_region_as_whole(tmp_path, monkeypatch, axes, shape,
                                                                            channel, projection):
    import tifffile

    from nuclei_pipeline.datasets import image_files

    rows = np.arange(70).reshape((70, 1, 1) if axes == "YXS" else (70, 1))  # brighter down the rows
    values = (np.random.default_rng(5).integers(0, 200, shape) + 20 * rows).astype(np.uint16)
    options = {"photometric": "minisblack", "planarconfig": "contig"} if axes == "YXS" else \
        {"imagej": True, "metadata": {"axes": axes}}
    tifffile.imwrite(tmp_path / "plate.tif", values, tile=(16, 16), compression="zlib", **options)
    whole = image_files.read_image(tmp_path / "plate.tif", channel, projection)
    original = image_files.read_original_image(tmp_path / "plate.tif", projection)
    monkeypatch.setattr(image_files, "LAZY_PIXELS", 40 * 40)  # rows × columns (× planes), never × channels
    lazy = image_files.read_image_lazily(tmp_path / "plate.tif", channel, projection)
    assert isinstance(lazy, image_files.LazyImage) and not lazy._memmappable  # the Zarr store's branch
    assert np.array_equal(lazy[5:50, 7:41], whole[5:50, 7:41]) and np.array_equal(np.asarray(lazy), whole)
    lazy_original = image_files.read_original_lazily(tmp_path / "plate.tif", projection)
    assert np.array_equal(lazy_original[10:60, :], original[10:60, :])
