"""Sentence embeddings with the pretrained MiniLM-L6: semantic search over movie reviews, and a classifier
trained on the embeddings (frozen encoder, features computed once).

    python -m examples.sentence_embeddings
"""

from __future__ import annotations

import flax.linen as nn
import numpy as np

import jaxdl as jd


def main(quick: bool = False) -> dict[str, float]:
    """Embed reviews, answer a query by cosine similarity, then fit a linear classifier on the embeddings."""
    from jaxdl.data.reviews import read_movie_reviews

    minilm = jd.pretrained("minilm-l6")
    texts, labels, _ = read_movie_reviews()
    n = 120 if quick else 3000
    order = np.random.default_rng(0).permutation(len(texts))[:n]
    texts, labels = [texts[i][:300] if quick else texts[i] for i in order], labels[order]
    embeddings = minilm.embed(texts)  # [n, 384], unit length: cosine similarity is a dot product
    query = minilm.embed(["a moving story with wonderful acting"])[0]
    best = np.argsort(-(embeddings @ query))[:3]
    for i in best:
        print(f"{embeddings[i] @ query:.3f}  {texts[i][:100]!r}")
    cut = int(0.8 * n)
    run = jd.fit(nn.Dense(2), (embeddings[:cut], labels[:cut]), loss="sparse_categorical_crossentropy",
                 epochs=30, batch_size=32, learning_rate=3e-2, progress=False)
    result = run.evaluate((embeddings[cut:], labels[cut:]))
    print(f"sentiment from frozen MiniLM embeddings: test accuracy {result['accuracy']:.3f} on {n - cut} reviews")
    return result


if __name__ == "__main__":
    main()
