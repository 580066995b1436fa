"""Images to batches: the folder datamodule that feeds ``Trainer.predict``, and which rank predicts what.

``anomalib_folder_ext.data.FolderDataModule`` is the class path configs name.
"""

from anomalib_folder_ext.data.datamodule import (
    FolderDataModule,
    FolderImageBatch,
    FolderImageDataset,
    FolderImageItem,
)

__all__ = ["FolderDataModule", "FolderImageBatch", "FolderImageDataset", "FolderImageItem"]
