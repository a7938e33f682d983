"""Image loading and bundled sample images."""

from cnnlens.data._images import SAMPLE_IMAGES, load_image, sample_image, sample_images

__all__ = ["SAMPLE_IMAGES", "load_image", "sample_image", "sample_images"]
