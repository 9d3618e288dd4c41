"""The letterbox of detection inputs: the aspect kept, the padding, the boxes mapped there and back
(tests/integration/test_detection_pipeline.py: the detection training and evaluation path)."""

from __future__ import annotations

import torch

from edgecomp.data.detection.letterbox import PAD_VALUE, letterbox, to_original_boxes


def test_letterbox_keeps_the_aspect_pads_and_maps_boxes_back():
    image = torch.rand(3, 60, 100)
    boxes = torch.tensor([[10.0, 5.0, 50.0, 45.0], [0.0, 0.0, 100.0, 60.0]])
    square, moved, scale = letterbox(image, boxes, 50)
    assert square.shape == (3, 50, 50)
    assert scale.tolist() == [0.5, 0.5, 0.5, 0.5]
    assert torch.equal(moved, boxes * 0.5)
    assert torch.all(square[:, 30:, :] == PAD_VALUE)  # bottom padding; the image fills the top 30 rows
    assert not torch.all(square[:, :30, :] == PAD_VALUE)
    assert torch.allclose(to_original_boxes(moved, scale, 100, 60), boxes)
    # a box reaching into the padding comes back clipped to the original image
    assert to_original_boxes(torch.tensor([[40.0, 20.0, 50.0, 50.0]]), scale, 100, 60).tolist() == [
        [80.0, 40.0, 100.0, 60.0]
    ]
