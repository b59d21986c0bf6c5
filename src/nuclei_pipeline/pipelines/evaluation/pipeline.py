from kedro.pipeline import Node, Pipeline

from nuclei_pipeline.pipelines.evaluation.nodes import (
    confidence_reference,
    image_confidences,
    package_served_model,
    plot_gallery,
    plot_ood_gallery,
    plot_score_by_threshold,
    plot_score_histogram,
    postprocess_predictions,
    predict_ood_sets,
    predict_validation,
    rescale_validation,
    score_images,
    score_ood_images,
    select_validation_samples,
    summarise_scores,
    tune_postprocessing,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(select_validation_samples, ["train_samples", "train_validation_split", "extra_train_samples"],
                 "validation_samples",
                 name="select_validation_samples"),
            Node(
                predict_validation,
                ["trained_model", "validation_samples", "model_spec",
                 "params:evaluation", "params:prediction", "params:postprocessing"],
                "validation_probabilities",
                name="predict_validation",
            ),
            Node(
                tune_postprocessing,
                ["validation_probabilities", "validation_samples", "params:postprocessing", "params:evaluation",
                 "model_spec"],
                ["postprocessing_settings", "postprocessing_trials"],
                name="tune_postprocessing",
            ),
            # Tuned on 1× maps; then each image at the scale inference would choose with the tuned settings.
            Node(
                rescale_validation,
                ["trained_model", "validation_samples", "validation_probabilities", "model_spec",
                 "postprocessing_settings", "params:evaluation", "params:prediction"],
                ["validation_rescaled_probabilities", "validation_scales"],
                name="rescale_validation",
            ),
            Node(
                postprocess_predictions,
                ["validation_rescaled_probabilities", "postprocessing_settings"],
                "validation_predictions",
                name="postprocess_validation",
            ),
            Node(image_confidences, ["validation_predictions", "validation_rescaled_probabilities"],
                 "validation_confidences", name="validation_image_confidences"),
            Node(
                score_images,
                ["validation_samples", "validation_predictions", "image_table", "validation_confidences",
                 "validation_scales"],
                "validation_scores",
                name="score_validation_images",
            ),
            # Out-of-distribution sets: scored with the settings tuned above, never tuned on.
            Node(
                predict_ood_sets,
                ["trained_model", "ood_raw", "model_spec", "postprocessing_settings", "params:evaluation",
                 "params:prediction"],
                ["ood_predictions", "ood_confidence", "ood_scales"],
                name="predict_ood_sets",
            ),
            Node(score_ood_images, ["ood_raw", "ood_predictions", "ood_confidence", "ood_scales"], "ood_scores",
                 name="score_ood_images"),
            # The model's confidence scale on its validation images: inference flags images below it.
            Node(confidence_reference, ["validation_samples", "validation_confidences"], "confidence_reference",
                 name="confidence_reference"),
            # The evaluated model with its tuned settings, logged and registered for `mlflow models serve`.
            Node(package_served_model, ["trained_model", "model_spec", "postprocessing_settings", "params:inference",
                                        "params:prediction"], "served_model", name="package_served_model"),
            Node(plot_ood_gallery, ["ood_raw", "ood_predictions", "ood_scores"], "ood_gallery_plot",
                 name="plot_ood_gallery"),
            Node(
                summarise_scores,
                ["validation_scores", "ood_scores"],
                ["evaluation_summary", "evaluation_metrics"],
                name="summarise_validation_scores",
            ),
            Node(plot_score_by_threshold, "validation_scores", "score_by_threshold_plot",
                 name="plot_score_by_threshold"),
            Node(plot_score_histogram, "validation_scores", "score_histogram_plot",
                 name="plot_score_histogram"),
            Node(
                plot_gallery,
                ["validation_samples", "validation_predictions", "validation_scores", "params:evaluation"],
                "validation_gallery_plot",
                name="plot_validation_gallery",
            ),
        ],
        tags="evaluation",
    )
