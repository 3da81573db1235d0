"""Model registry: create(name, ...) builds any network of the roster (needs torch).

Networks: vgg19, resnet50, efficientnet_b0 (classifiers); unet, unet_vgg19, deeplabv3_resnet101
(segmenters). Fitted/combined: `classical` (edge_bus.models.classical, no torch) and `ensemble`
(edge_bus.models.ensemble).
"""

from edge_bus.models.registry import create, list_models, model_task, register, roster

__all__ = ["create", "list_models", "model_task", "register", "roster"]
