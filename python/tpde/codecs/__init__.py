"""The tpde chunk coder as plug-in codecs: numcodecs (zarr v2 ``compressor=``) and zarr v3
(``serializer=``). Importing this package registers both under the name "tpde"; it pulls
in neither the checkpoint store nor torch."""

from .numcodecs_codec import TPDECodec
from .zarr_codec import TPDEZarrCodec

__all__ = ["TPDECodec", "TPDEZarrCodec"]
