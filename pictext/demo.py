"""`make demo`: the default model (LiT on emoji + shapes) finds emoji by words it was never trained on, finds
held-out emoji by name, classifies held-out shapes zero-shot, and retrieves shapes by text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pictext import hub
from pictext.api import classify, encode_images, encode_texts, load
from pictext.data.emoji import ensure_emoji, named_images
from pictext.data.shapes import COLORS, SHAPES, ShapesWorld, find_shapes
from pictext.evaluate import emoji_recall

QUERIES = ("a green triangle", "a red square", "a blue cross", "a yellow circle", "a purple square")
EMOJI_QUERIES = ("puppy", "kitten", "automobile", "a rainy day", "something to eat for breakfast")


# "a green triangle" is held out of `shapes`; "красный круг" is "a red circle" as the lesson's readers type it
GENERATE_PROMPTS = ("a red circle", "a blue square", "a green triangle", "красный круг")


def run_demo(n_classify: int = 8, n_gallery: int = 300, out: str | Path = "generated") -> dict[str, float]:
    model = load()
    results = emoji_demo(model, ensure_emoji(hub.home()))
    results |= shapes_demo(model, n_classify, n_gallery)
    return results | generation_demo(Path(out)) | dalle_demo(Path(out)) | unclip_demo(Path(out))


# all held out; "фиолетовый квадрат" is "a purple square" (a Russian caption is reranked by the shapes CLIP alone:
# the default CLIP reads English)
DALLE_PROMPTS = ("a green triangle", "a red square", "a small blue cross", "a large yellow circle",
                 "фиолетовый квадрат")  # fmt: skip


def dalle_demo(out: Path, samples: int = 16) -> dict[str, float]:
    """The default DALL-E on captions of colour-shape combinations it never saw: 16 samples each, the one the
    default rerankers (the shapes and the default CLIP, cosines summed) score highest kept, and the oracle's
    verdict on it."""
    import time

    from pictext.data.shapes import judge, prompt_language, prompt_target
    from pictext.generate import prepare
    from pictext.generate.dalle import DALLESettings
    from pictext.generate.outputs import contact_sheet, slug, write_outputs

    generators = {"en": prepare("dalle", DALLE_PROMPTS[0])}  # one a language: the rerankers read the caption's
    names = generators["en"].names["clip"]
    print(f"\nDALL-E: {samples} samples per held-out caption, the best by the {' and '.join(names)} CLIPs kept "
          "(cosines summed; guidance 3 shared by the caption and its shape alone, 2:1; seed 0)")  # fmt: skip
    passed = []
    for prompt in DALLE_PROMPTS:
        began = time.perf_counter()
        language = prompt_language(prompt)
        if language not in generators:
            generators[language] = prepare("dalle", prompt)
        generator = generators[language]
        result = generator(prompt, DALLESettings(samples=samples, keep=samples, seed=0))
        color, shape = prompt_target(prompt)  # type: ignore[misc]
        verdict = judge(result.image, color, shape)
        name = f"dalle-{slug(prompt)}-0"
        written = write_outputs(out, name, result.image, result.records[0])
        write_outputs(out, f"{name}-sheet", contact_sheet(result.samples, result.scores),
                      result.records[0] | {"clip_scores": result.scores})  # fmt: skip
        shown = np.mean([judge(image, color, shape).dominant for image in result.samples])
        print(f"{prompt:22s} {written['png']}  CLIP score {result.clip_score:.3f}  oracle: "
              f"{'shows it' if verdict.dominant else 'does not show it'}  (all 16: {shown:.0%} show it; "
              f"{time.perf_counter() - began:.1f} s)")  # fmt: skip
        passed.append(verdict.dominant)
    return {"dalle_oracle_reranked": float(np.mean(passed))}


def unclip_demo(out: Path) -> dict[str, float]:
    """unCLIP as `pictext generate` picks it for a shapes-world caption (`unclip-ru`): a held-out caption drawn,
    variations of a real picture, and an interpolation between two real pictures; the oracle judges each."""
    import time

    from pictext.data.shapes import Scene, Shape, judge, render
    from pictext.generate import prepare
    from pictext.generate.outputs import contact_sheet, write_outputs
    from pictext.generate.rerank import clip_scores
    from pictext.generate.unclip import UnclipSettings

    prompt = "a green triangle"  # held out of the training of every shipped model
    generator = prepare("unclip", prompt)
    pipeline = generator.pipeline
    size = pipeline.decoder.config.resolution
    began = time.perf_counter()
    result = generator(prompt, UnclipSettings(samples=4, seed=0))
    shown = [judge(image, "green", "triangle").dominant for image in result.samples]
    written = write_outputs(out, "unclip-a-green-triangle-0", contact_sheet(result.samples, result.scores),
                            result.records[0] | {"clip_scores": result.scores})  # fmt: skip
    print(f"\nunCLIP (prior, then a {size} px decoder): {prompt!r}, 4 pictures: {written['png']}  "
          f"oracle: {sum(shown)} of 4 show it")  # fmt: skip
    red = render(Scene((Shape("red", "circle", "large", "center"),), background=40), size)
    blue = render(Scene((Shape("blue", "square", "large", "center"),), background=40), size)
    variations = pipeline.vary(red, 4, seed=0)
    kept = [judge(image, "red", "circle").dominant for image in variations]
    scores = [float(x) for x in clip_scores([red, *variations], "a red circle", pipeline.clip)]
    record = {"method": "unclip-vary", "seed": 0, "scores": "CLIP score with 'a red circle'"}
    written = write_outputs(out, "unclip-vary-red-circle-0", contact_sheet([red, *variations], scores), record)
    print(f"variations of a red circle: {written['png']}  oracle: {sum(kept)} of 4 keep its colour and shape")
    steps = pipeline.interpolate(red, blue, 5, seed=0)
    scores = [float(x) for x in clip_scores(steps, "a blue square", pipeline.clip)]
    written = write_outputs(out, "unclip-interpolate-0", contact_sheet(steps, scores),
                            {"method": "unclip-interpolate", "seed": 0, "from": "red circle", "to": "blue square",
                             "scores": "CLIP score with 'a blue square'"})  # fmt: skip
    print(f"red circle -> blue square in 5 pictures: {written['png']}  (CLIP score with 'a blue square' "
          f"{scores[0]:.2f} -> {scores[-1]:.2f}; {time.perf_counter() - began:.0f} s in all)")  # fmt: skip
    return {"unclip_oracle": float(np.mean(shown)), "unclip_variation_oracle": float(np.mean(kept))}


def generation_demo(out: Path, steps: int = 100) -> dict[str, float]:
    """VQGAN+CLIP with the shapes-world VQGAN (the default DALL-E's tokenizer), guided by the `shapes` CLIP (the
    method's defaults for a shapes-world prompt); the oracle judges every picture."""
    import time

    from pictext.data.shapes import judge, prompt_target
    from pictext.generate import prepare
    from pictext.generate.outputs import slug, write_outputs
    from pictext.generate.vqgan_clip import VQGANCLIPSettings

    generator = prepare("vqgan-clip", GENERATE_PROMPTS[0])
    side = generator.vqgan().config.resolution
    print(f"\nVQGAN+CLIP: the shapes-world VQGAN (the default DALL-E's) guided by the shapes CLIP, {steps} steps at "
          f"{side} px, seed 0")  # fmt: skip
    passed = []
    for prompt in GENERATE_PROMPTS:
        began = time.perf_counter()
        result = generator(prompt, VQGANCLIPSettings(steps=steps, seed=0))
        color, shape = prompt_target(prompt)  # type: ignore[misc]
        verdict = judge(result.image, color, shape)
        written = write_outputs(out, f"{slug(prompt)}-0", result.image, result.records[0], result.frames)
        print(f"{prompt:18s} {written['png']}  CLIP score {result.steps[0].clip_score:.3f} -> "
              f"{result.clip_score:.3f}  oracle: {'shows it' if verdict.dominant else 'does not show it'}"
              f"  ({time.perf_counter() - began:.0f} s)")  # fmt: skip
        passed.append(verdict.dominant)
    return {"generation_oracle": float(np.mean(passed))}


def emoji_demo(model, folder: Path) -> dict[str, float]:
    train_pngs, train_names = named_images(folder, "train")
    held_pngs, held_names = named_images(folder, "held_out")
    names = train_names + held_names
    images = encode_images(train_pngs + held_pngs, model=model)
    print(f'\nText-to-emoji search over {len(names)} emoji (top 3; no caption contains "puppy" or "kitten")')
    for query, scores in zip(EMOJI_QUERIES, encode_texts(list(EMOJI_QUERIES), model=model) @ images.T):
        top = np.argsort(-scores)[:3]
        print(f"{query:32s} " + " | ".join(f"{names[i]} {scores[i]:.2f}" for i in top))
    held = emoji_recall(model, images[len(train_names) :], held_names)
    print(
        f"held-out emoji (never trained on), found by name among {held['images']:.0f}: "
        f"recall@1 {held['text_to_image_r@1']:.1%}, @5 {held['text_to_image_r@5']:.1%}, "
        f"@10 {held['text_to_image_r@10']:.1%}"
    )
    return {"emoji_held_out_r@10": held["text_to_image_r@10"]}


def shapes_demo(model, n_classify: int, n_gallery: int) -> dict[str, float]:
    classes = [f"{c} {s}" for c in COLORS for s in SHAPES]
    held = ShapesWorld(split="held_out", seed=7, length=200)
    images = [held[i][0] for i in range(len(held))]
    truth = [held.label(i) for i in range(len(held))]
    probs = classify(images, classes, model=model, templates=("a {}",))
    accuracy = float(np.mean([classes[int(p.argmax())] == t for p, t in zip(probs, truth)]))

    print("\nZero-shot classification of shapes whose colour-shape combination the model never saw")
    print(f"{'true':18s} {'1st':28s} {'2nd':28s}")
    for p, t in list(zip(probs, truth))[:n_classify]:
        top = np.argsort(-p)[:2]
        cells = [f"{classes[j]} {p[j]:6.1%}" for j in top]
        print(f"{t:18s} {cells[0]:28s} {cells[1]:28s}")
    print(f"top-1 accuracy on {len(truth)} held-out images among {len(classes)} classes: {accuracy:.1%}")

    gallery = ShapesWorld(split="all", seed=11, length=n_gallery, max_shapes=2)
    gallery_images = [gallery[i][0] for i in range(len(gallery))]
    image_emb = encode_images(gallery_images, model=model)
    text_emb = encode_texts(list(QUERIES), model=model)
    print(f"\nText-to-image retrieval over {n_gallery} images (top 5; ok = the oracle sees that shape in the image)")
    precision = []
    for query, scores in zip(QUERIES, text_emb @ image_emb.T):
        want = tuple(query.split()[1:3])
        top = np.argsort(-scores)[:5]
        hits = [want in find_shapes(gallery_images[i]) for i in top]
        precision.append(np.mean(hits))
        shown = ", ".join(f"#{i} {'ok' if h else '--'} {scores[i]:.2f}" for i, h in zip(top, hits))
        print(f"{query:20s} {shown}")
    print(f"precision@5: {np.mean(precision):.0%}\n")
    return {"zero_shot_top1": accuracy, "precision_at_5": float(np.mean(precision))}
