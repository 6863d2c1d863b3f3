"""engine.rotations: the shifting transformations of the peer methods."""

import torch

from engine.rotations import ROTATIONS, rotate, rotated_copies


def test_rotate_quarter_turn_moves_the_top_row_to_the_left_column():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    turned = rotate(x, 1)
    # counter-clockwise: the top row (0, 1, 2) becomes the left column, read bottom to top
    assert turned[0, 0, :, 0].tolist() == [2.0, 1.0, 0.0]
    assert torch.equal(rotate(x, ROTATIONS), x)
    assert torch.equal(rotate(rotate(x, 1), 3), x)


def test_rotated_copies_are_rotation_major_with_their_labels():
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    images, labels = rotated_copies(x)
    assert images.shape == (8, 3, 4, 4)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for k in range(ROTATIONS):
        assert torch.equal(images[2 * k : 2 * k + 2], rotate(x, k))
    images, labels = rotated_copies(x, (2, 3))
    assert labels.tolist() == [2, 2, 3, 3] and torch.equal(images[:2], rotate(x, 2))
