"""Training the student: SFT with TRL, the loss masks, and the models and tokenizers it starts from.

- ``sft``: full / LoRA / QLoRA SFT on masked training examples (TRL, PEFT, bitsandbytes), resumable,
  merged plain models; ``stamp``: what made a trained model, and its fingerprint;
- ``kbit``: a 4-bit base made ready for QLoRA with its activations in bf16 (not peft's fp32 upcast);
- ``masking``: which tokens carry loss, from segment kinds and the tokenizer's offsets;
- ``student``: S0's starting point and the student's tokenizer for a run; ``tiny_model``: the embedded
  default's tiny Qwen2 and its locally trained tokenizer;
- ``r1_tokenizer``: the real DeepSeek-R1-Distill-Qwen tokenizer built offline; ``standin``: a tiny
  random model of the 7B's class with that tokenizer (the dress rehearsal).

Imports ``common``, ``formats``, ``config``, ``world`` (the tiny tokenizer's corpus) and ``artifacts``.
"""
