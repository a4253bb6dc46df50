"""Self-supervised pretraining (`neurovit pretrain`): DINO on photos or unlabelled stacks → a 2D ViT for
`init.source`."""

from neurovit.pretrain.export import BACKBONE, BACKBONE_INFO, BackboneExport
from neurovit.pretrain.inputs import INPUTS, ImageFolderInput, StackFolderInput, detect_kind

__all__ = ["BACKBONE", "BACKBONE_INFO", "INPUTS", "BackboneExport", "ImageFolderInput", "StackFolderInput",
           "detect_kind"]
