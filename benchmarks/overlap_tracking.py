"""Overlap tracking of a time-lapse's nuclei (``inference.track_min_iou``) against how far nuclei move between frames.

Run from ``benchmarks/``: ``../.venv/bin/python overlap_tracking.py [--radius 8] [--steps 0.1 0.25 0.5 0.75 1 1.5]
[--min-iou 0.1 0.25 0.5] [--movies 20]``.

No annotated time-lapse is at hand, and the linking needs none of the network: each synthetic
movie is 20 frames of 256² with 30 discs (radius ``--radius`` px, ±25 %) placed without overlap,
each moving with a constant speed of ``step`` × its diameter per frame in its own random direction
(bouncing off the edges), drawn as label images with each frame's labels shuffled, as a segmenter
would number them; a disc hidden under another is left out of that frame. The frames are linked as the
inference pipeline links them (``core.stitch.link_by_overlap``, one to one, largest total IoU) and
compared with the true identities. Printed per step and threshold: the share of true frame-to-frame
links kept (a nucleus keeps its track), the share of links made that are wrong (two nuclei joined),
and tracks made per true track (1.0: none broken).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd

from nuclei_pipeline.core.stitch import link_by_overlap


def synthetic_movie(rng: np.random.Generator, step: float, radius: float, frames: int = 20, size: int = 256,
                    count: int = 30) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Shuffled per-frame labels and the true identity (1 … count, 0 background) of each frame's pixels."""
    radii = radius * rng.uniform(0.75, 1.25, count)
    centres = rng.uniform(radius * 1.5, size - radius * 1.5, (count, 2))
    angles = rng.uniform(0, 2 * np.pi, count)
    velocity = np.column_stack([np.cos(angles), np.sin(angles)]) * (2 * radii * step)[:, None]
    rows, columns = np.ogrid[:size, :size]
    labels, identities = [], []
    for _ in range(frames):
        identity = np.zeros((size, size), np.int32)
        for index in rng.permutation(count):  # later discs cover earlier ones
            inside = (rows - centres[index, 0]) ** 2 + (columns - centres[index, 1]) ** 2 <= radii[index] ** 2
            identity[inside] = index + 1
        shuffled = np.concatenate([[0], rng.permutation(count) + 1]).astype(np.int32)
        labels.append(shuffled[identity])
        identities.append(identity)
        centres += velocity
        for axis in range(2):  # bounce off the edges
            outside = (centres[:, axis] < radii) | (centres[:, axis] > size - radii)
            velocity[outside, axis] *= -1
            centres[:, axis] = np.clip(centres[:, axis], radii, size - radii)
    return labels, identities


def _majority(tracked: np.ndarray, identity: np.ndarray) -> dict[int, int]:
    """For each true nucleus present, the track label covering most of its pixels."""
    inside = identity > 0
    pairs, counts = np.unique(np.stack([identity[inside], tracked[inside]]), axis=1, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (true, track), count in zip(pairs.T, counts, strict=True):
        if count > best.get(int(true), (0, -1))[1]:
            best[int(true)] = (int(track), int(count))
    return {true: track for true, (track, _) in best.items()}


def link_scores(tracked: np.ndarray, identities: list[np.ndarray]) -> dict[str, float]:
    """Kept true links, wrong links made, and tracks per true track, of one linked movie."""
    kept = possible = made = wrong = 0
    tracks_of: dict[int, set[int]] = {}
    previous = _majority(tracked[0], identities[0])
    for true, track in previous.items():
        tracks_of.setdefault(true, set()).add(track)
    for frame in range(1, len(identities)):
        current = _majority(tracked[frame], identities[frame])
        for true, track in current.items():
            tracks_of.setdefault(true, set()).add(track)
            if true in previous:
                possible += 1
                kept += previous[true] == track
        owners = {track: true for true, track in previous.items()}
        for true, track in current.items():
            if track in owners:
                made += 1
                wrong += owners[track] != true
        previous = current
    return {"links_kept": kept / max(possible, 1), "wrong_links": wrong / max(made, 1),
            "tracks_per_nucleus": float(np.mean([len(tracks) for tracks in tracks_of.values()]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--radius", type=float, default=8.0)
    parser.add_argument("--steps", type=float, nargs="+", default=[0.1, 0.25, 0.4, 0.5, 0.75, 1.0])
    parser.add_argument("--min-iou", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--movies", type=int, default=20)
    arguments = parser.parse_args()
    rows = []
    for step, min_iou in itertools.product(arguments.steps, arguments.min_iou):
        rng = np.random.default_rng(0)  # the same movies for every threshold
        scores = []
        for _ in range(arguments.movies):
            labels, identities = synthetic_movie(rng, step, arguments.radius)
            scores.append(link_scores(link_by_overlap(labels, min_iou), identities))
        rows.append({"step (diameters per frame)": step, "min_iou": min_iou, **pd.DataFrame(scores).mean().round(3)})
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
