"""Lightning callbacks: ``AnomalyMapWriter`` (the files of a run) and ``ChannelsLast`` (the fast layout).

``anomalib_folder_ext.callbacks.AnomalyMapWriter`` and ``.ChannelsLast`` are the class paths configs name.
"""

from anomalib_folder_ext.callbacks.channels_last import ChannelsLast
from anomalib_folder_ext.callbacks.writer import AnomalyMapWriter

__all__ = ["AnomalyMapWriter", "ChannelsLast"]
