"""Two-resolution batches for a distillation teacher that sees high-resolution pixels (compressor.teacher_input=
native): the student's and the teacher's images of one stored image under one augmentation, their boxes in both
frames, and the detail the teacher's image holds that the student's, upsampled, lacks (tests/unit/test_scalekd.py:
the distiller's side; tests/integration/test_scalekd_smoke.py: the teacher's training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from edgecomp.data.detection import SyntheticDetection
from edgecomp.data.detection.detection_datamodule import DetectionDataModule, LetterboxedDetections
from edgecomp.data.detection.index import DetectionIndex
from edgecomp.distill.alignment import teacher_input
from edgecomp.errors import ConfigError

STUDENT = 96


def stored_image(folder, width: int, height: int) -> DetectionIndex:
    """One stored image of `width` x `height` pixels, a left-to-right ramp under noise (so a flip shows), with three
    boxes, one near each edge."""
    path = folder / "image.png"
    ramp = np.linspace(0, 230, width)[None, :, None] + np.random.default_rng(0).uniform(0, 25, size=(height, width, 3))
    Image.fromarray(ramp.astype(np.uint8)).save(path)
    index = DetectionIndex(categories=[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    index.images.append({"id": 1, "file_name": str(path), "width": width, "height": height})
    index.add_box(1, 1, 3.5, 7.25, 41.0, 22.5)
    index.add_box(1, 2, width - 60.0, height - 33.0, 57.5, 30.0)
    index.add_box(1, 1, width / 2, 1.0, 9.0, 9.0)
    return index


@pytest.mark.parametrize(("width", "height", "scale"), [(301, 173, 2.0), (173, 301, 2.0), (301, 173, 1.5)])
def test_the_teachers_and_the_students_boxes_of_one_stored_image_agree_after_scaling(tmp_path, width, height, scale):
    samples = LetterboxedDetections(
        stored_image(tmp_path, width, height), STUDENT, {1: 0, 2: 1}, train=True, augment="flip", teacher_scale=scale
    )
    flips = set()
    for seed in range(6):  # the flip is drawn per sample: both outcomes occur
        torch.manual_seed(seed)
        image, target, teacher_image = samples[0]
        teacher = round(STUDENT * scale)
        assert image.shape == (3, STUDENT, STUDENT) and teacher_image.shape == (3, teacher, teacher)
        assert target["teacher_boxes"].shape == target["boxes"].shape == (3, 4)
        # The same geometry: the teacher's image brought to the student's size is the student's image (both resized
        # from the stored image with antialiasing, so not bit-equal), and its padding starts where scale x the
        # student's does.
        shrunk = F.interpolate(teacher_image[None], size=(STUDENT, STUDENT), mode="area")[0]
        assert (shrunk - image).abs().mean() < 0.03
        assert (shrunk - image.flip(-1)).abs().mean() > 0.15  # a flip of only one of them would show
        content = [int((image[0] != 114 / 255).any(dim=other).sum()) for other in (1, 0)]  # rows, columns
        teacher_content = [int((teacher_image[0] != 114 / 255).any(dim=other).sum()) for other in (1, 0)]
        assert teacher_content == [round(side * scale) for side in content]
        # scale x the student's boxes: exactly for a whole scale; for 1.5 the content's odd side rounds to a whole
        # pixel, so the boxes scale by the contents' ratio on that axis
        ratio = torch.tensor([teacher_content[1] / content[1], teacher_content[0] / content[0]] * 2)
        assert ratio.tolist() == pytest.approx([scale] * 4, abs=0 if scale == int(scale) else 0.01)
        torch.testing.assert_close(target["teacher_boxes"], target["boxes"] * ratio, atol=1e-3, rtol=0)
        flips.add(bool(target["boxes"][0, 0] > content[1] / 2))  # the first box starts near the left edge
    assert flips == {True, False}


def high_frequency_share(image: torch.Tensor, band: float) -> float:
    """The share of the image's spectral energy (mean removed) at frequencies above `band` cycles per pixel."""
    grey = image.mean(dim=0)
    spectrum = torch.fft.fft2(grey - grey.mean()).abs() ** 2
    fy = torch.fft.fftfreq(grey.shape[0]).abs()[:, None]
    fx = torch.fft.fftfreq(grey.shape[1]).abs()[None, :]
    high = (fy > band) | (fx > band)
    return float(spectrum[high].sum() / spectrum.sum())


def test_the_teachers_image_holds_detail_that_the_upsampled_student_image_lacks(tmp_path):
    """On synthetic_sod rendered at 2x, the teacher's image has spectral energy above the student's Nyquist frequency
    (a quarter cycle per teacher pixel) that the student's image upsampled has not; rendered at the student's size
    (render_scale 1) there is no such detail to see, and the two carry the same."""

    def shares(render_scale: float) -> tuple[float, float]:
        source = SyntheticDetection(
            tmp_path, image_size=STUDENT, train_images=2, val_images=1, render_scale=render_scale
        )
        index = source.index("train")
        samples = LetterboxedDetections(index, STUDENT, {c: c - 1 for c in (1, 2, 3, 4)}, True, teacher_scale=2.0)
        image, _, teacher_image = samples[0]
        upsampled = teacher_input(image[None], 2.0)[0]
        return high_frequency_share(teacher_image, 0.25), high_frequency_share(upsampled, 0.25)

    native, upsampled = shares(2.0)
    assert native > 4 * upsampled, (native, upsampled)
    same_pixels, upsampled_again = shares(1.0)
    assert same_pixels == pytest.approx(upsampled_again, rel=0.5), (same_pixels, upsampled_again)
    assert native > 4 * same_pixels


def test_the_datamodules_two_resolution_copy_batches_both_images_and_evaluates_on_the_students(tmp_path):
    source = SyntheticDetection(tmp_path, image_size=STUDENT, train_images=4, val_images=2, render_scale=2.0)
    datamodule = DetectionDataModule(
        lambda split: source.index(split), {"train": "train", "val": "val"}, 4, STUDENT, batch_size=2, num_workers=0
    )
    datamodule.setup()
    two = datamodule.with_teacher_scale(2.0)
    images, targets, teacher_images = next(iter(two.train_dataloader()))
    assert images.shape == (2, 3, STUDENT, STUDENT) and teacher_images.shape == (2, 3, 2 * STUDENT, 2 * STUDENT)
    for target in targets:
        torch.testing.assert_close(target["teacher_boxes"], 2 * target["boxes"], atol=1e-3, rtol=0)
    assert len(next(iter(two.eval_dataloader()))) == 2  # evaluation stays the student's, one resolution
    assert len(next(iter(datamodule.train_dataloader()))) == 2  # the original is left single-resolution
    high = datamodule.at_image_size(2 * STUDENT)
    high_images, high_targets = next(iter(high.train_dataloader()))
    assert high_images.shape == (2, 3, 2 * STUDENT, 2 * STUDENT)
    torch.testing.assert_close(high_images, teacher_images)  # the teacher's own training sees what it distils on
    assert [t["boxes"].shape for t in high_targets] == [t["teacher_boxes"].shape for t in targets]
    with pytest.raises(ConfigError, match=r"teacher_scale=1.3 x image_size=96 is not a whole number of pixels"):
        datamodule.with_teacher_scale(1.3)
