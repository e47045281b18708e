"""Transfer learning: pretrained weights imported into Orbax once (`zoo`), read safely from their packages
(`torch_checkpoint`, `minilm`, `imagenet`, `mapping`), restored as a backbone (`backbone`), frozen or
fine-tuned by parameter group (`freeze`), with optional cached features (`features`)."""
