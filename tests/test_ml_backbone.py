import torch

from tests.base import BaseTestCase, hymenoptera_dir
from training.ml import backbone, preprocess

# ImageNet class 310 is "ant, emmet, pismire".
IMAGENET_ANT = 310
# Correctly loaded, EfficientNet-Lite0 is confident this photo shows an ant;
# with PyTorch-style symmetric padding it drops to 13%, and with ImageNet
# mean/std or 0..1 pixels it names another class.
DISCRIMINATING_ANT = "2019439677_2db655d361.jpg"
CLEAR_ANT = "0013035.jpg"


def _probabilities(network, names: list[str]) -> torch.Tensor:
    spec = preprocess.PreprocessSpec(network.spec.image_size)
    folder = hymenoptera_dir() / "train" / "ants"
    images = [preprocess.decode((folder / name).read_bytes(), spec) for name in names]
    with torch.inference_mode():
        return network(preprocess.to_tensor(images)).softmax(dim=1)


class BackboneTests(BaseTestCase):
    def test_it_puts_an_ant_photo_in_the_imagenet_ant_class(self):
        network = backbone.load_backbone("lite0")
        p = _probabilities(network, [DISCRIMINATING_ANT, CLEAR_ANT])

        self.assertEqual(p.argmax(dim=1).tolist(), [IMAGENET_ANT, IMAGENET_ANT])
        self.assertGreater(p[0, IMAGENET_ANT].item(), 0.5)
        self.assertGreater(p[1, IMAGENET_ANT].item(), 0.9)

    def test_it_loads_the_larger_lite2_network_with_strict_keys(self):
        network = backbone.load_backbone("lite2")
        p = _probabilities(network, [CLEAR_ANT])

        self.assertEqual(network.spec.image_size, 260)
        self.assertEqual(p.argmax(dim=1).tolist(), [IMAGENET_ANT])

    def test_it_gives_a_1280_number_feature_vector_per_image(self):
        network = backbone.load_backbone("lite0")
        pixels = torch.full((2, 3, 224, 224), 127.0)
        with torch.inference_mode():
            features = network.features(backbone.normalise(pixels))
        self.assertEqual(tuple(features.shape), (2, 1280))

    def test_it_pads_like_tensorflow_same(self):
        # Stride 2 on an even size puts the extra pixel after, not before.
        self.assertEqual(backbone.same_padding(224, 3, 2), (0, 1))
        self.assertEqual(backbone.same_padding(65, 5, 2), (2, 2))
        self.assertEqual(backbone.same_padding(112, 5, 1), (2, 2))

    def test_it_normalises_pixels_around_127(self):
        pixels = torch.tensor([0.0, 127.0, 255.0])
        self.assertEqual(backbone.normalise(pixels).tolist(), [-127 / 128, 0.0, 1.0])
