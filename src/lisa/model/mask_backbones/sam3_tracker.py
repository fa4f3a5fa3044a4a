"""SAM 3's image encoder and promptable mask decoder (transformers' ``Sam3TrackerModel``, image
mode) behind the mask-backbone seam.

``Sam3TrackerModel`` is SAM 2's interface on SAM 3's ViT encoder (1008 px, patch 14, an FPN of
strides 4, 8, 16 and 32, of which the decoder uses the first three): the same prompt encoder,
mask decoder (``conv_s0`` / ``conv_s1`` high-resolution path) and ``no_memory_embedding``. So the
SAM 2 adapter serves it as is; only the classes and the pixel normalisation (mean = std = 0.5,
as ``Sam3ImageProcessor``) differ. ``no_memory_embedding`` goes on the stride-16 map the decoder
reads, as in SAM 3 and transformers' video tracker (``Sam3TrackerVideoModel`` drops the stride-32
level first); the image-mode ``Sam3TrackerModel.get_image_embeddings`` adds it to the stride-32
level and then drops that level, so its stride-16 map lacks it. SAM 3's concept detector (``Sam3Model``: text prompt -> DETR
queries -> many instance masks) has no one-prompt-one-mask decoder, so it is not a mask backbone.
"""

from __future__ import annotations

from transformers import Sam3TrackerConfig, Sam3TrackerModel

from lisa.model.mask_backbones.sam2 import Sam2Backbone


class Sam3TrackerBackbone(Sam2Backbone):
    model_type = "sam3_tracker"
    config_class = Sam3TrackerConfig
    model_class = Sam3TrackerModel
    pixel_mean = (0.5, 0.5, 0.5)
    pixel_std = (0.5, 0.5, 0.5)
