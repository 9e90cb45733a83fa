"""GeoMorph in torch: geometric convolutions, the network, label grids, CRF-RNN,
warps, losses, input normalisation and safe checkpoints (device-agnostic)."""

from .checkpoint import CheckpointMeta, TrainingProvenance, check_compatible, load_checkpoint, read_metadata, save_checkpoint
from .crf import CRFRNN
from .geomorph import GeoMorph, GeoMorphConfig, GeoMorphOutput, StageConfig, default_config, tiny_config
from .geoconv import GeoConv, HexMaxPool, HexUpsample, hex_laplacian, hex_max_pool, hex_upsample
from .labels import LabelGrid, deform_control_points, deform_from_logits
from .losses import cc_per_channel, similarity_loss, smoothness_loss, total_loss, warp_distortion
from .network import FeatureEncoder, GeoMorphNet, NetworkConfig
from .normalise import NormalisationSpec, normalise_features
from .refine import refine
from .warp import SphereSampler, Transformer, sample_on_sphere, upsample_displacement

__all__ = [
    "CRFRNN", "CheckpointMeta", "FeatureEncoder", "GeoConv", "GeoMorph", "GeoMorphConfig", "GeoMorphNet",
    "GeoMorphOutput", "StageConfig", "default_config", "refine", "tiny_config", "HexMaxPool", "HexUpsample",
    "LabelGrid", "NetworkConfig", "NormalisationSpec", "SphereSampler", "TrainingProvenance", "Transformer",
    "cc_per_channel", "check_compatible", "deform_control_points", "deform_from_logits", "hex_laplacian",
    "hex_max_pool", "hex_upsample", "load_checkpoint", "normalise_features", "read_metadata", "sample_on_sphere",
    "save_checkpoint", "similarity_loss", "smoothness_loss", "total_loss", "upsample_displacement",
    "warp_distortion",
]
