import sys

from anomalib_folder_ext.cli.command import main

sys.exit(main())
