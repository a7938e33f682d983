"""Image loading, datasets (image folders, CSV lists, in-memory arrays, bundled digits) and sample images."""

from cnnlens.data._arrays import ArrayImages
from cnnlens.data._datasets import CsvImages, ImageFiles, ImageFolder, UnlabelledImages
from cnnlens.data._digits import digits
from cnnlens.data._images import SAMPLE_IMAGES, ImageDataset, ImageInput, load_image, sample_image, sample_images
from cnnlens.data._open import open_dataset

__all__ = [
    "SAMPLE_IMAGES",
    "UnlabelledImages",
    "ArrayImages",
    "CsvImages",
    "ImageFiles",
    "ImageFolder",
    "ImageDataset",
    "ImageInput",
    "digits",
    "load_image",
    "open_dataset",
    "sample_image",
    "sample_images",
]
