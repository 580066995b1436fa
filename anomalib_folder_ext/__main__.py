import sys

from anomalib_folder_ext.cli import main

sys.exit(main())
