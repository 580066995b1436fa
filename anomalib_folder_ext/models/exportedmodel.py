"""An exported model in Lightning's predict loop, in place of the checkpoint's EfficientAd: the
same datamodule feeds it, the same writer scores and writes its maps."""

from __future__ import annotations

import logging
import math

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Resize

from anomalib_folder_ext.models.exported import ExportInfo, read_export
from anomalib_folder_ext.errors import ExportedModelError
from anomalib_folder_ext.models.runtimes import default_threads, open_runtime

DEFAULT_INPUT_SIZE = (256, 256)
# The statistics anomalib's PostProcessor keeps (buffers); its settings come with checkpoint_config().
POST_PROCESSOR_STATE = ("_image_threshold", "_pixel_threshold", "image_min", "image_max", "pixel_min", "pixel_max")


def post_processor_state(post_processor: PostProcessor) -> dict:
    """The statistics and settings of the checkpoint's post-processor, as plain data for ``export.json``."""
    state = {name: float(getattr(post_processor, name)) for name in POST_PROCESSOR_STATE}
    return {"state": {k: (None if math.isnan(v) else v) for k, v in state.items()}, "config": post_processor.checkpoint_config()}


def restored_post_processor(info: ExportInfo) -> PostProcessor:
    """anomalib's post-processor with the checkpoint's statistics, so the writer scores, labels and
    (``normalization: model``) scales as with the checkpoint. For a graph that normalises itself:
    one that leaves its [0, 1] values as they are (threshold 0.5 over the range 0 to 1)."""
    post_processor = PostProcessor()
    if info.normalized:
        values = {"_image_threshold": 0.5, "_pixel_threshold": 0.5, "image_min": 0.0, "image_max": 1.0,
                  "pixel_min": 0.0, "pixel_max": 1.0}
    else:
        values = {k: (math.nan if v is None else v) for k, v in info.post_processor.get("state", {}).items()}
        post_processor.load_checkpoint_config(info.post_processor.get("config", {}))
    for name, value in values.items():
        if name in POST_PROCESSOR_STATE:
            getattr(post_processor, name).fill_(float(value))
    return post_processor


def _weights_in_the_graph(record: logging.LogRecord) -> bool:
    """Drop anomalib's "ckpt_path is not provided" warning: an exported model has no checkpoint to give."""
    return "ckpt_path is not provided" not in record.getMessage()


class ExportedModel(AnomalibModule):
    """An exported EfficientAd run by OpenVINO or ONNX Runtime, for ``Trainer.predict``.

    Args:
        model_path: The export directory, its ``model.xml``, or a ``.onnx``.
        backend: For an ``.onnx``: ``onnxruntime`` (default) or ``openvino``.
        threads: The runtime's threads; by default its own choice, or the cores this process may use
            when it is held to fewer than the machine has.

    Example (the model of ``configs/folder.yaml`` replaced)::

        anomalib predict --config configs/folder.yaml --config configs/exported.yaml \\
            --model.init_args.model_path export/ --data.init_args.folder_path /data/batch_01
    """

    def __init__(self, model_path: str, backend: str | None = None, threads: int | None = None) -> None:
        self.info = read_export(model_path)
        size = self.info.image_size or DEFAULT_INPUT_SIZE
        super().__init__(pre_processor=PreProcessor(transform=Resize(list(size), antialias=True)),
                         post_processor=restored_post_processor(self.info), evaluator=False, visualizer=False)
        logging.getLogger("anomalib.engine.engine").addFilter(_weights_in_the_graph)
        self.runtime = open_runtime(self.info.path, backend)
        self.threads = threads
        self.model = torch.nn.Identity()  # Lightning moves and casts modules; the graph is not one

    @property
    def model_file(self) -> str:
        """The file this run's weights come from, as a checkpoint's path is for the torch model."""
        return str(self.info.path.resolve())

    @property
    def backend(self) -> str:
        """The runtime, which resume compares with the earlier run's (their numbers differ in the last bits)."""
        return self.runtime.backend

    def setup(self, stage: str) -> None:
        """Compile for the run's precision (``trainer.precision``): ``32-true`` is f32 on every CPU."""
        precision = self.trainer.precision if self._trainer is not None else "32-true"
        self.runtime.compile(precision, self.threads or default_threads())

    @property
    def backend_text(self) -> str:
        """What ran, for the summary: ``OpenVINO 2026.4 (f32), model.xml (int8 export)``."""
        name = "OpenVINO" if self.runtime.backend == "openvino" else "ONNX Runtime"
        kind = "anomalib export, normalised in the graph" if self.info.normalized else f"{self.info.precision} export"
        return f"{name} {self.runtime.version} ({self.runtime.precision or '?'}), {self.info.path.name} ({kind})"

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        del batch_idx, dataloader_idx
        if not len(batch.image):  # every file of the batch failed to decode: nothing to run
            return batch.update(pred_score=batch.image.new_zeros((0, 1), dtype=torch.float32),
                                anomaly_map=batch.image.new_zeros((0, *batch.image.shape[-2:]), dtype=torch.float32))
        images = batch.image.detach().to("cpu", torch.float32).contiguous().numpy()
        outputs = self.runtime.run(images)
        scores = torch.from_numpy(outputs["pred_score"].astype("float32", copy=False)).reshape(-1, 1)
        maps = torch.from_numpy(outputs["anomaly_map"].astype("float32", copy=False))
        return batch.update(pred_score=scores.to(batch.image.device), anomaly_map=maps.to(batch.image.device))

    @property
    def trainer_arguments(self) -> dict:
        return {}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, *args: object, **kwargs: object) -> None:
        msg = "an exported model only predicts; train the checkpoint with anomalib"
        raise ExportedModelError(msg)
