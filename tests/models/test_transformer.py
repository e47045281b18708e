import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdl.models import create_model
from jaxdl.models.language_model import TransformerLM, sample
from jaxdl.models.seq2seq import Seq2SeqTransformer, greedy_decode
from jaxdl.models.transformer import (
    Decoder,
    Encoder,
    TransformerClassifier,
    unstack_layer_params,
)
from jaxdl.models.vit import image_to_patches

SMALL = dict(d_model=16, num_heads=2, mlp_dim=32, dropout_rate=0.0)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("module", [Encoder, Decoder])
def test_scanned_block_stack_equals_the_unrolled_stack_with_the_same_parameters(module, norm):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 16)), jnp.float32)
    valid = jnp.array([[True] * 5, [True, True, True, False, False]])
    scanned = module(**SMALL, num_layers=3, norm=norm, scan_layers=True, max_length=8)
    unrolled = module(**SMALL, num_layers=3, norm=norm, scan_layers=False, max_length=8)
    args = (x, valid) if module is Encoder else (x, None, None, valid)
    variables = scanned.init(jax.random.PRNGKey(0), *args)
    params = dict(variables["params"])
    params["blocks"] = unstack_layer_params(params["blocks"])
    assert set(params["blocks"]) == {"layer_0", "layer_1", "layer_2"}
    expected = unrolled.apply({"params": params}, *args)
    np.testing.assert_allclose(scanned.apply(variables, *args), expected, rtol=1e-5, atol=1e-5)
    assert jax.tree.structure(unrolled.init(jax.random.PRNGKey(0), *args)["params"]) == jax.tree.structure(params)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_rematerialised_blocks_give_the_same_outputs_and_gradients(scan_layers):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 16)), jnp.float32)
    plain = Encoder(**SMALL, num_layers=2, scan_layers=scan_layers, max_length=8)
    remat = Encoder(**SMALL, num_layers=2, scan_layers=scan_layers, max_length=8, remat=True)
    variables = jax.jit(plain.init)(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(jax.eval_shape(remat.init, jax.random.PRNGKey(0), x)) == jax.tree.structure(variables)

    def loss(model, params):
        return jnp.sum(jnp.sin(model.apply({"params": params}, x)))

    np.testing.assert_allclose(jax.jit(remat.apply)(variables, x), jax.jit(plain.apply)(variables, x), rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.jit(jax.grad(lambda p: loss(remat, p)))(variables["params"])),
                    jax.tree.leaves(jax.jit(jax.grad(lambda p: loss(plain, p)))(variables["params"]))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@settings(max_examples=3)  # each example traces two encoders eagerly
@given(time=st.integers(2, 7), seed=st.integers(0, 1000))
def test_encoder_without_positional_encoding_is_permutation_equivariant(time, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, time, 16)), jnp.float32)
    perm = rng.permutation(time)
    encoder = Encoder(**SMALL, num_layers=2, positional="none")
    variables = encoder.init(jax.random.PRNGKey(seed), x)
    np.testing.assert_allclose(encoder.apply(variables, x[:, perm]), encoder.apply(variables, x)[:, perm], rtol=1e-5, atol=1e-5)
    with_positions = Encoder(**SMALL, num_layers=2, positional="sinusoidal")
    v2 = with_positions.init(jax.random.PRNGKey(seed), x)
    if not np.array_equal(perm, np.arange(time)):  # with positions, order matters
        assert not np.allclose(with_positions.apply(v2, x[:, perm]), with_positions.apply(v2, x)[:, perm], atol=1e-4)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_causal_output_at_t_has_exactly_zero_gradient_from_later_inputs(scan_layers):
    decoder = Decoder(**SMALL, num_layers=2, scan_layers=scan_layers, max_length=8)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 6, 16)), jnp.float32)
    variables = jax.jit(decoder.init)(jax.random.PRNGKey(0), x)
    # The position is an argument: one compiled gradient serves all six.
    output_gradient = jax.jit(jax.grad(lambda inp, t: decoder.apply(variables, inp)[0, t].sum()))
    for t in range(6):
        grad = output_gradient(x, t)
        assert np.all(np.asarray(grad[0, t + 1:]) == 0.0)
        assert np.any(np.asarray(grad[0, : t + 1]) != 0.0)


def test_classifier_ignores_padding_and_how_much_of_it_there_is():
    model = TransformerClassifier(**SMALL, num_layers=2, vocab_size=30, max_length=12, num_outputs=3)
    ids = jnp.array([[5, 6, 7, 0, 0, 0], [9, 8, 7, 6, 5, 4]])
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), ids)
    apply = jax.jit(model.apply)  # one program per shape, not one per operation
    out = apply(variables, ids)
    longer = jnp.concatenate([ids, jnp.zeros((2, 4), jnp.int32)], axis=1)
    np.testing.assert_allclose(apply(variables, longer), out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(apply(variables, ids[:1, :3]), out[:1], rtol=1e-5, atol=1e-5)


def test_classifier_rejects_ids_outside_the_vocabulary_and_too_long_sequences():
    model = TransformerClassifier(**SMALL, num_layers=1, vocab_size=30, max_length=6)
    ids = jnp.ones((1, 6), jnp.int32)
    variables = model.init(jax.random.PRNGKey(0), ids)
    with pytest.raises(ValueError, match="outside the vocabulary of 30"):
        model.apply(variables, ids.at[0, 2].set(30))
    with pytest.raises(ValueError, match="longer than the positional table"):
        model.apply(variables, jnp.ones((1, 7), jnp.int32))


def _seq2seq():
    model = Seq2SeqTransformer(**SMALL, num_layers=2, vocab_size=12, max_length=9)
    source = jnp.asarray(np.random.default_rng(0).integers(3, 12, (4, 6)), jnp.int32).at[1, 4:].set(0)
    variables = jax.jit(model.init)(jax.random.PRNGKey(3), {"source": source, "target": jnp.ones((4, 8), jnp.int32)})
    return model, variables, source


def test_greedy_decoding_is_what_teacher_forcing_predicts_on_its_own_output():
    # Feeding greedy's tokens back as the decoder input must reproduce them as the argmax at every step up to
    # EOS: so a teacher-forced exact match is the same event as a greedy exact match.
    model, variables, source = _seq2seq()
    decoded = np.asarray(greedy_decode(model, variables, source, 8))
    decoder_in = np.concatenate([np.full((4, 1), model.bos_id), decoded[:, :-1]], axis=1)
    predicted = np.asarray(jax.jit(model.apply)(variables, {"source": source, "target": jnp.asarray(decoder_in)})).argmax(-1)
    for row in range(4):
        ends = np.flatnonzero(decoded[row] == model.eos_id)
        stop = ends[0] + 1 if len(ends) else 8
        np.testing.assert_array_equal(predicted[row, :stop], decoded[row, :stop])
        assert np.all(decoded[row, stop:] == model.pad_id)


def test_lm_sampling_at_temperature_zero_equals_a_python_greedy_loop():
    model = TransformerLM(**SMALL, num_layers=2, vocab_size=20, max_length=10)
    prompt = jnp.array([[3, 4], [5, 6]], jnp.int32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((2, 10), jnp.int32))
    out = np.asarray(sample(model, variables, prompt, 6, jax.random.PRNGKey(1), temperature=0.0))
    tokens = np.asarray(prompt)
    apply = jax.jit(model.apply)  # one program per length, not one per operation
    for _ in range(6):
        nxt = np.asarray(apply(variables, jnp.asarray(tokens)))[:, -1].argmax(-1)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, tokens)
    drawn = sample(model, variables, prompt, 6, jax.random.PRNGKey(1), temperature=1.0, top_k=1)
    np.testing.assert_array_equal(drawn, tokens)  # top-1 sampling is greedy
    with pytest.raises(ValueError, match="max_length"):
        sample(model, variables, prompt, 9, jax.random.PRNGKey(1))


@given(h=st.integers(1, 3), w=st.integers(1, 3), p=st.integers(1, 4), c=st.integers(1, 3))
def test_image_to_patches_matches_a_loop_over_patches(h, w, p, c):
    x = np.random.default_rng(0).normal(size=(2, h * p, w * p, c)).astype(np.float32)
    patches = np.asarray(image_to_patches(jnp.asarray(x), p))
    expected = np.stack([[x[b, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(-1) for i in range(h) for j in range(w)]
                         for b in range(2)])
    np.testing.assert_array_equal(patches, expected)


def test_vit_classifies_images_and_rejects_sizes_the_patch_does_not_divide():
    vit = create_model("vit", **SMALL, num_layers=2, patch_size=7, num_outputs=10)
    variables = vit.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    assert vit.apply(variables, jnp.zeros((3, 28, 28, 1))).shape == (3, 10)
    with pytest.raises(ValueError, match="not divisible by patch_size 7"):
        vit.apply(variables, jnp.zeros((1, 30, 30, 1)))
