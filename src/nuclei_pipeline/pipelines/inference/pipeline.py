from kedro.pipeline import Node, Pipeline

from nuclei_pipeline.pipelines.inference.nodes import (
    draw_overlays,
    export_3d_table,
    export_masks,
    measure_masks,
    measure_z_stacks,
    plot_sample_predictions,
    predict_masks,
    queue_for_annotation,
    stitch_z_stacks,
    summarise_masks,
    tabulate_tracks,
    track_time_lapses,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                predict_masks,
                ["inference_images", "trained_model", "model_spec", "postprocessing_settings",
                 "params:inference", "existing_mask_keys", "params:prediction"],
                "predicted_masks",
                name="predict_masks",
            ),
            Node(
                measure_masks,
                ["inference_originals", "predicted_masks", "mask_confidence", "params:inference"],
                "nucleus_measurements",
                name="measure_masks",
            ),
            Node(
                export_masks,
                ["predicted_masks", "nucleus_measurements", "params:inference"],
                ["nucleus_measurements_csv", "label_tiffs", "imagej_roi_sets", "geojson_outlines"],
                name="export_masks",
            ),
            Node(
                stitch_z_stacks,
                ["inference_images", "predicted_masks", "inference_z_stacks", "params:inference",
                 "inference_originals"],
                "label_stacks",
                name="stitch_z_stacks",
            ),
            Node(
                measure_z_stacks,
                ["inference_originals", "label_stacks", "inference_z_stacks", "params:inference"],
                "nucleus_measurements_3d",
                name="measure_z_stacks",
            ),
            Node(export_3d_table, ["nucleus_measurements_3d", "params:inference"], "nucleus_measurements_3d_csv",
                 name="export_3d_table"),
            Node(
                track_time_lapses,
                ["predicted_masks", "label_stacks", "inference_time_lapses", "inference_z_stacks", "params:inference",
                 "inference_originals"],
                "label_movies",
                name="track_time_lapses",
            ),
            Node(tabulate_tracks, ["label_movies", "predicted_masks", "label_stacks", "inference_time_lapses"],
                 "nucleus_tracks", name="tabulate_tracks"),
            Node(
                summarise_masks,
                ["inference_images", "predicted_masks", "nucleus_measurements", "params:inference",
                 "confidence_reference", "mask_scales"],
                ["submission", "inference_report"],
                name="summarise_masks",
            ),
            Node(
                queue_for_annotation,
                ["inference_images", "predicted_masks", "inference_report", "params:inference"],
                "annotation_queue",
                name="queue_for_annotation",
            ),
            Node(draw_overlays, ["inference_images", "predicted_masks"], "mask_overlays",
                 name="draw_overlays"),
            Node(
                plot_sample_predictions,
                ["inference_images", "predicted_masks", "inference_report", "params:inference"],
                "sample_predictions_plot",
                name="plot_sample_predictions",
            ),
        ],
        tags="inference",
    )
