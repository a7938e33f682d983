"""Image loading, datasets (image folders, CSV lists, in-memory arrays, bundled digits) and sample images."""

from cnnlens.data._arrays import ArrayImages
from cnnlens.data._classes import imagenet_names as imagenet_names
from cnnlens.data._classes import read_class_map as read_class_map
from cnnlens.data._datasets import CsvImages, ImageFiles, ImageFolder, UnlabelledImages
from cnnlens.data._digits import DIGITS_SIZE as DIGITS_SIZE
from cnnlens.data._digits import digits
from cnnlens.data._images import SAMPLE_IMAGES, ImageDataset, ImageInput, load_image, sample_image, sample_images
from cnnlens.data._open import open_dataset

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
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
