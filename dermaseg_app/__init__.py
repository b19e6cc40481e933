"""DermaSeg: skin-lesion segmentation review with SLSNet."""

__version__ = "0.1.0"
