"""Images to batches: the folder datamodule that feeds ``Trainer.predict``, and which rank predicts what.

``anomalib_folder_ext.data.FolderDataModule`` is the class path configs name; ``.WatchedFolderDataModule``
predicts each image as it lands in a watched folder.
"""

from anomalib_folder_ext.data.batch import FailedImage, FolderImageBatch, FolderImageItem
from anomalib_folder_ext.data.datamodule import FolderDataModule, FolderImageDataset
from anomalib_folder_ext.data.stream import WatchedFolderDataModule

__all__ = ["FailedImage", "FolderDataModule", "FolderImageBatch", "FolderImageDataset", "FolderImageItem",
           "WatchedFolderDataModule"]
