"""The CAM family. Importing this package registers the methods."""

from .eigen import EigenCam, EigenGradCam
from .fullgrad import FullGrad
from .gradient_weighted import GradCam, GradCamPP, HiResCam, LayerCam, XGradCam
from .guided import GuidedGradCam
from .original import Cam
from .score import AblationCam, ScoreCam

__all__ = [
    "AblationCam",
    "Cam",
    "EigenCam",
    "EigenGradCam",
    "FullGrad",
    "GradCam",
    "GradCamPP",
    "GuidedGradCam",
    "HiResCam",
    "LayerCam",
    "ScoreCam",
    "XGradCam",
]
