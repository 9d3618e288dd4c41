"""Runtimes: the engines that run a deployable artifact on a target device (one implementation per file)."""

from edgecomp.evaluate.runtimes.runtime import Predictor, Runtime

__all__ = ["Predictor", "Runtime"]
