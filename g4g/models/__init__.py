"""G4G networks (torch + numpy only): the generator, its parts, the discriminators and the sync expert.

    g4g.py            G4G generator, G4GConfig, MODEL_SIZES registry, build_generator
    encoders.py       E_s, E_r, E_l, E_a (Eq. 1-4)
    adain.py          AdaIN and the intra-modality alignment (Eq. 5)
    contrastive.py    inter-modality InfoNCE with momentum heads and a queue (Eq. 6-10)
    adaat.py          per-channel affine deformation AdaAT (Eq. 18)
    decoder.py        cat(F_s, F_def) -> I_gen
    blend_net.py      U-Net fusion -> I_out
    composite.py      occlusion mask, lower-face mask G, landmark sketch L_r, composite
    discriminators.py LS-GAN frame and temporal PatchGAN discriminators
    sync_expert.py    Wav2Lip-style SyncNet and the generator's sync loss
"""

from g4g.models.adaat import AdaAT, AdaptiveSpatialTransform, affine_warp
from g4g.models.adain import AdaIN, AdaINResBlock, IntraModalityAlignment
from g4g.models.blend_net import BlendNet
from g4g.models.blocks import count_params
from g4g.models.composite import (
                                  MASK_SCALES,
                                  composite,
                                  crop_mouth,
                                  face_size,
                                  landmark_sketch,
                                  lower_face_mask,
                                  mouth_box,
                                  occlusion_mask,
)
from g4g.models.contrastive import InterModalityContrast, ProjectionHead, info_nce
from g4g.models.decoder import Decoder
from g4g.models.discriminators import FrameDiscriminator, PatchDiscriminator, TemporalDiscriminator, stack_clips
from g4g.models.encoders import AudioEncoder, CodeHead, LandmarkEncoder, VisualEncoder
from g4g.models.g4g import G4G, MODEL_SIZES, G4GConfig, build_generator, model_config
from g4g.models.sync_expert import SyncExpert, faces_to_mouths, sync_bce, sync_loss

__all__ = [
    "AdaAT", "AdaptiveSpatialTransform", "affine_warp", "AdaIN", "AdaINResBlock", "IntraModalityAlignment",
    "BlendNet", "count_params", "MASK_SCALES", "composite", "crop_mouth", "face_size", "landmark_sketch",
    "lower_face_mask", "mouth_box", "occlusion_mask", "InterModalityContrast", "ProjectionHead", "info_nce",
    "Decoder", "FrameDiscriminator", "PatchDiscriminator", "TemporalDiscriminator", "stack_clips",
    "AudioEncoder", "CodeHead", "LandmarkEncoder", "VisualEncoder", "MODEL_SIZES", "G4G", "G4GConfig",
    "build_generator", "model_config", "SyncExpert", "faces_to_mouths", "sync_bce", "sync_loss",
]
