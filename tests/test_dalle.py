"""DALL-E's transformer and sampler: masks against their definitions, the cache against the full pass,
guidance, filtering, priming, and a tiny model that learns."""

from __future__ import annotations

import itertools

import pytest
import torch

from pictext.dalle.model import DALLE, DALLEConfig, attention_mask
from pictext.dalle.sampling import SamplingConfig, composed_logits, filter_logits, guided_logits, sample
from pictext.nn.packed import set_prepacking

TINY = DALLEConfig(text_vocab=20, image_vocab=16, text_len=5, image_grid=4, width=32, layers=4, heads=4,
                   attention=("full", "row", "column", "conv"))  # fmt: skip


def _allowed(kind: str, i: int, j: int, text_len: int, grid: int, kernel: int) -> bool:
    """The masks' definitions, position by position, written independently of attention_mask."""
    if j > i:
        return False
    if i < text_len or j < text_len:  # a text query sees earlier text; an image query sees all text
        return True
    q, k = i - text_len, j - text_len
    (qr, qc), (kr, kc) = divmod(q, grid), divmod(k, grid)
    return {
        "full": True,
        "row": q - k < grid,
        "column": qc == kc,
        "conv": abs(qr - kr) <= kernel // 2 and abs(qc - kc) <= kernel // 2,
    }[kind]


@pytest.mark.parametrize("kind", ["full", "row", "column", "conv"])
@pytest.mark.parametrize(("text_len", "grid", "kernel"), [(3, 3, 3), (4, 4, 3), (2, 5, 5)])
def test_masks_match_their_definitions(kind: str, text_len: int, grid: int, kernel: int) -> None:
    mask = attention_mask(kind, text_len, grid, kernel)
    T = text_len + grid * grid
    assert mask.shape == (T, T)
    want = torch.tensor([[_allowed(kind, i, j, text_len, grid, kernel) for j in range(T)] for i in range(T)])
    assert torch.equal(mask, want)
    assert not mask.triu(1).any()  # no position attends to the future
    assert mask.diagonal().all()  # every position sees itself


def test_row_mask_on_a_known_grid() -> None:
    # 1 text position, a 3x3 grid: image query 4 (row 1, column 1) sees image tokens 2, 3, 4 and the text.
    mask = attention_mask("row", 1, 3)
    assert mask[1 + 4].nonzero().flatten().tolist() == [0, 1 + 2, 1 + 3, 1 + 4]
    assert attention_mask("column", 1, 3)[1 + 7].nonzero().flatten().tolist() == [0, 1 + 1, 1 + 4, 1 + 7]


def test_no_output_depends_on_a_later_token() -> None:
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (1, TINY.text_len))
    image = torch.randint(0, TINY.image_vocab, (1, TINY.image_len))
    x = model.embed(model.text_tokens(text), image[:, :-1]).detach().requires_grad_(True)
    h = model.hidden(x) @ torch.randn(TINY.width)  # (1, T); a plain sum of a LayerNorm's output is constant
    for p in (0, TINY.text_len, TINY.seq_len // 2):
        (grad,) = torch.autograd.grad(h[0, p], x, retain_graph=True)
        assert grad[0, p + 1 :].abs().max() == 0, f"position {p} depends on a later position"
        assert grad[0, p].abs().max() > 0


def test_pads_become_one_token_per_position() -> None:
    model = DALLE(TINY)
    text = torch.tensor([[1, 7, 2, 0, 0]])
    assert model.text_tokens(text).tolist() == [[1, 7, 2, 20 + 3, 20 + 4]]
    assert model.text_tokens(model.null_text(1, torch.device("cpu"))).tolist() == [[20, 21, 22, 23, 24]]


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cached_and_uncached_sampling_give_the_same_logits(guidance: float) -> None:
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (3, TINY.text_len))
    runs = []
    for use_cache in (True, False):
        cfg = SamplingConfig(guidance_scale=guidance, use_cache=use_cache)
        runs.append(sample(model, text, cfg, torch.Generator().manual_seed(1), return_logits=True))
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    torch.testing.assert_close(runs[0].logits, runs[1].logits, atol=1e-5, rtol=1e-5)


def test_prepacked_and_plain_linear_layers_sample_alike() -> None:
    """The transformer's PackedLinear layers change rounding, not results: the same draws and logits within 1e-5
    with prepacking on and off (wherever oneDNN runs; elsewhere both are F.linear)."""
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (3, TINY.text_len))
    runs = []
    for on in (True, False):
        old = set_prepacking(on)
        try:
            runs.append(sample(model, text, SamplingConfig(guidance_scale=3.0), torch.Generator().manual_seed(1),
                               return_logits=True))  # fmt: skip
        finally:
            set_prepacking(old)
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    torch.testing.assert_close(runs[0].logits, runs[1].logits, atol=1e-5, rtol=1e-5)


def test_sampled_logits_are_the_models_logits_for_that_sequence() -> None:
    """Guidance scale 1 is the conditional model: the logits each token was drawn from are those a plain
    teacher-forced pass gives for the drawn sequence."""
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (2, TINY.text_len))
    out = sample(model, text, SamplingConfig(guidance_scale=1.0), torch.Generator().manual_seed(2), return_logits=True)
    image = out.tokens.flatten(1)
    with torch.no_grad():
        h = model.hidden(model.embed(model.text_tokens(text), image[:, :-1]))
        want = model.image_logits(h[:, TINY.text_len - 1 :])
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=1e-5)


def test_guidance_mixes_the_two_streams() -> None:
    cond, uncond = torch.randn(2, 7), torch.randn(2, 7)
    assert torch.equal(guided_logits(cond, uncond, 1.0), cond)
    assert torch.equal(guided_logits(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(guided_logits(cond, uncond, 3.0), uncond + 3 * (cond - uncond))


def test_a_guide_equal_to_the_caption_is_plain_guidance() -> None:
    """Composable guidance with the caption itself as a further guide is plain guidance at the same scale, by
    construction: the weights are shared out, and every stream then pulls the same way."""
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (3, TINY.text_len))
    cfg = SamplingConfig(guidance_scale=3.0)
    plain = sample(model, text, cfg, torch.Generator().manual_seed(4), return_logits=True)
    twice = sample(model, text, cfg, torch.Generator().manual_seed(4), return_logits=True, guides=[(text, 0.7)])
    torch.testing.assert_close(twice.logits, plain.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(twice.tokens, plain.tokens)


@pytest.mark.parametrize("use_cache", [True, False])
def test_composed_logits_are_the_weighted_streams_for_the_drawn_tokens(use_cache: bool) -> None:
    """uncond + scale * sum_i w_i (cond_i - uncond) / sum of the positive w_i, each stream teacher-forced on the
    drawn tokens; a negative weight counts in the sum but not in the normaliser."""
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    captions = torch.randint(1, TINY.text_vocab, (3, 2, TINY.text_len))
    guides = [(captions[1], 0.5), (captions[2], -0.25)]
    cfg = SamplingConfig(guidance_scale=2.0, use_cache=use_cache)
    out = sample(model, captions[0], cfg, torch.Generator().manual_seed(3), return_logits=True, guides=guides)
    image = out.tokens.flatten(1)

    def logits(text: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = model.hidden(model.embed(model.text_tokens(text), image[:, :-1]))
            return model.image_logits(h[:, TINY.text_len - 1 :])

    u = logits(model.null_text(2, torch.device("cpu")))
    c0, c1, c2 = (logits(t) for t in captions)
    want = u + 2.0 * ((c0 - u) + 0.5 * (c1 - u) - 0.25 * (c2 - u)) / 1.5
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(composed_logits([c0], [1.0], u, 2.0), guided_logits(c0, u, 2.0))
    with pytest.raises(ValueError, match="a guide must be"):
        sample(model, captions[0], cfg, guides=[(captions[1][:1], 1.0)])


def test_guided_sampling_uses_the_empty_caption_as_unconditional_stream() -> None:
    """With guidance 0 only the unconditional stream counts: the caption cannot change the logits."""
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    texts = torch.randint(1, TINY.text_vocab, (2, 1, TINY.text_len))
    cfg = SamplingConfig(guidance_scale=0.0, top_k=1)
    a, b = (sample(model, t, cfg, return_logits=True) for t in texts)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.logits, b.logits)


def test_top_k_and_top_p_keep_what_they_say() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_k=2))).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_p=0.7))).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_p=0.5))).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, SamplingConfig(top_p=0.01))).sum() == 1  # the best always stays
    torch.testing.assert_close(filter_logits(logits, SamplingConfig(temperature=2.0)), logits / 2)
    # Unsorted rows: top-k keeps every logit at least the k-th largest, ties with it included
    rows = torch.tensor([[0.0, 3.0, 1.0, 1.0, -2.0], [5.0, -1.0, 2.0, 7.0, 2.5]])
    kept = torch.isfinite(filter_logits(rows, SamplingConfig(top_k=2))).tolist()
    assert kept == [[False, True, True, True, False], [True, False, False, True, False]]


@pytest.mark.parametrize(
    "bad", [{"temperature": 0}, {"top_k": 0}, {"top_p": 0}, {"top_p": 1.5}, {"guidance_scale": -1}]
)
def test_bad_sampling_settings_are_named(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        SamplingConfig(**bad)


def test_priming_keeps_the_given_tokens() -> None:
    torch.manual_seed(0)
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (2, TINY.text_len))
    prime = torch.randint(0, TINY.image_vocab, (2, 6))
    for cfg in (SamplingConfig(), SamplingConfig(guidance_scale=2.0, use_cache=False)):
        out = sample(model, text, cfg, torch.Generator().manual_seed(0), prime=prime)
        assert torch.equal(out.tokens.flatten(1)[:, :6], prime)


def test_sampling_is_seeded() -> None:
    model = DALLE(TINY).eval()
    text = torch.randint(1, TINY.text_vocab, (4, TINY.text_len))
    a, b, c = (sample(model, text, SamplingConfig(), torch.Generator().manual_seed(s)).tokens for s in (5, 5, 6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_parameter_gets_a_gradient() -> None:
    model = DALLE(TINY)
    text = torch.randint(1, TINY.text_vocab, (2, TINY.text_len))
    image = torch.randint(0, TINY.image_vocab, (2, TINY.image_grid, TINY.image_grid))
    out = model(text, image)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    want = (out.text_loss + 7 * out.image_loss) / 8
    torch.testing.assert_close(out.loss, want)


def test_a_tiny_model_learns_a_caption_to_image_map() -> None:
    """Four captions, each with its own fixed image: after a short fit, sampling at low temperature draws
    each caption's image. Known by construction; any working model and sampler get it exactly."""
    torch.manual_seed(0)
    cfg = DALLEConfig(text_vocab=8, image_vocab=6, text_len=3, image_grid=2, width=32, layers=2, heads=2)
    model = DALLE(cfg)
    text = torch.tensor([[1, 2 + k, 0] for k in range(4)])
    images = torch.tensor([list(p) for p in itertools.islice(itertools.permutations(range(6), 4), 0, 400, 100)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = model(text, images).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10
    out = sample(model.eval(), text, SamplingConfig(top_k=1))
    assert torch.equal(out.tokens.flatten(1), images)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="attention"):
        DALLEConfig(text_vocab=4, image_vocab=4, attention=("axial",))
    with pytest.raises(ValueError, match="odd"):
        DALLEConfig(text_vocab=4, image_vocab=4, conv_kernel=2)
    model = DALLE(TINY)
    with pytest.raises(ValueError, match="16 tokens"):
        model(torch.ones(1, 5, dtype=torch.long), torch.zeros(1, 9, dtype=torch.long))
