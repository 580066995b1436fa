"""Images to batches: the folder datamodule that feeds ``Trainer.predict``, and which rank predicts what.

``anomalib_folder_ext.data.FolderDataModule`` is the class path configs name.
"""

from anomalib_folder_ext.data.batch import FailedImage, FolderImageBatch, FolderImageItem
from anomalib_folder_ext.data.datamodule import FolderDataModule, FolderImageDataset

__all__ = ["FailedImage", "FolderDataModule", "FolderImageBatch", "FolderImageDataset", "FolderImageItem"]
