"""Class-conditional Fashion-MNIST: does a sample of class c look like class c, and what does guidance cost?

A classifier (multinomial logistic regression on the grey levels, trained here on the real training split;
its own accuracy on the real validation split is reported) labels samples drawn for each class at guidance
weights w in {0, 1, 2, 4} (guidance_mode "null": against the trained null label). Beside the accuracy, a
diversity measure: the mean grey-level distance between two samples of the same class (0: all identical),
against the same figure on real images. One grid image per class and weight.

    python benchmarks/conditional.py --model runs/images-cond --data data/fashion-mnist-size14 \
        --out docs/results/conditional
    python benchmarks/conditional.py --model RUN --data DATA --quick --out /tmp/conditional     # a smoke run

Not measured here: proteins / DNA validity and length KS before and after EOS padding (benchmarks/records.py),
and the prompt corpus's conditional bound against the AR baseline (benchmarks/sft.py).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import warnings

import torch

from discdiff.data.splits import open_split, spread_sample
from discdiff.evaluation.results import pyplot
from discdiff.training import from_pretrained


def images(data: str, split: str, context: int, n: int, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of a split spread over it: grey levels in [0, 1] [n, pixels] and labels [n]."""
    dataset = open_split(data, split, context=context, random_offset=False).dataset
    batch = dataset.get(spread_sample(len(dataset), n, 0).indices, 0, randomize=False)
    return batch.tokens.double() / (levels - 1), batch.labels


def classifier(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS (weight decay 1e-3)."""
    torch.manual_seed(0)
    clf = torch.nn.Linear(x.shape[1], classes).double()
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(x), y) + 1e-3 * clf.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return clf


def diversity(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean |a - b| over pixels, for pairs of images of the same class (grey levels in [0, 1])."""
    values = [torch.pdist(x[labels == c], p=1).mean().item() / x.shape[1] for c in labels.unique().tolist()
              if int((labels == c).sum()) > 1]
    return sum(values) / len(values)


def run(args) -> dict:
    pre = from_pretrained(args.model)
    cond = pre.config.get("conditioning") or {}
    classes, context = pre.config["model"]["num_classes"], pre.config["context"]
    levels = pre.vocab_size
    train_x, train_y = images(args.data, "train", context, args.train_images, levels)
    test_x, test_y = images(args.data, "validation", context, args.test_images, levels)
    clf = classifier(train_x, train_y, classes, args.classifier_steps)
    with torch.no_grad():
        result = {"classifier_test_accuracy": (clf(test_x).argmax(1) == test_y).double().mean().item(),
                  "real_diversity": diversity(test_x, test_y), "model": str(args.model),
                  "condition_dropout": cond.get("condition_dropout"), "label_names": cond.get("label_names"),
                  "samples_per_class": args.per_class, "steps": args.steps, "rows": [], "grids": {}}
        labels = torch.arange(classes).repeat_interleave(args.per_class)
        for w in args.weights:
            out = pre.diffusion.sample(pre.model, len(labels), context, "ancestral", steps=args.steps, label=labels,
                                       guidance=w, generator=torch.Generator().manual_seed(args.seed))
            x = out.samples.double() / (levels - 1)
            accuracy = (clf(x).argmax(1) == labels).double().mean().item()
            result["rows"].append({"guidance": w, "accuracy": accuracy, "diversity": diversity(x, labels)})
            result["grids"][str(w)] = out.samples.tolist()
            print(result["rows"][-1], flush=True)
    return result


def markdown(r: dict) -> str:
    lines = [f"Classifier (logistic regression on pixels) accuracy on real validation images: "
             f"{r['classifier_test_accuracy']:.3f}; real-image diversity {r['real_diversity']:.3f}. "
             f"{r['samples_per_class']} samples per class, ancestral sampler, {r['steps']} steps.", "",
             "| guidance w | classifier accuracy on samples | diversity |", "| ---: | ---: | ---: |"]
    lines += [f"| {row['guidance']:g} | {row['accuracy']:.3f} | {row['diversity']:.3f} |" for row in r["rows"]]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: pathlib.Path, side: int, shown: int = 6) -> None:
    """One row per class (its name on the left), one column block per guidance weight: the first ``shown``
    samples of each class."""
    plt = pyplot(path)
    if plt is None:
        return
    weights = list(r["grids"])
    per, classes = r["samples_per_class"], len(r["grids"][weights[0]]) // r["samples_per_class"]
    shown = min(shown, per)
    fig, axes = plt.subplots(classes, len(weights) * shown, figsize=(0.5 * len(weights) * shown, 0.55 * classes),
                             squeeze=False)
    names = r.get("label_names") or [str(c) for c in range(classes)]
    for wi, w in enumerate(weights):
        for i, ids in enumerate(r["grids"][w]):
            if i % per >= shown:
                continue
            ax = axes[i // per][wi * shown + i % per]
            if wi == 0 and i % per == 0:
                ax.set_ylabel(names[i // per], fontsize=6, rotation=0, ha="right", va="center")
            ax.imshow(torch.tensor(ids).view(side, side), cmap="gray", vmin=0, vmax=max(map(max, r["grids"][w])))
            ax.set_xticks([]), ax.set_yticks([])
            if i // per == 0 and i % per == 0:
                ax.set_title(f"w={w}", fontsize=7, loc="left")
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a class-conditional Fashion-MNIST run (required unless --report)")
    parser.add_argument("--data", help="its prepared corpus, e.g. data/fashion-mnist-size14")
    parser.add_argument("--out", default="out/conditional")
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--per-class", type=int, default=32)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--train-images", type=int, default=20_000)
    parser.add_argument("--test-images", type=int, default=5_000)
    parser.add_argument("--classifier-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 samples per class, 16 steps, small classifier data")
    parser.add_argument("--report", action="store_true", help="rewrite the markdown and plot from --out's JSON")
    args = parser.parse_args(argv)
    if args.report:
        r = json.loads((pathlib.Path(args.out) / "conditional.json").read_text())
        (pathlib.Path(args.out) / "conditional.md").write_text(markdown(r))
        plot(r, pathlib.Path(args.out) / "conditional.png", int(len(next(iter(r["grids"].values()))[0]) ** 0.5))
        return
    if not (args.model and args.data):
        parser.error("--model and --data are required (or --report to redraw from --out)")
    if args.quick:
        args.per_class, args.steps, args.train_images, args.test_images, args.classifier_steps = 4, 16, 3000, 1000, 50
    warnings.simplefilter("ignore", UserWarning)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = run(args)
    (out / "conditional.json").write_text(json.dumps(r))
    (out / "conditional.md").write_text(markdown(r))
    plot(r, out / "conditional.png", int(len(r["grids"][str(args.weights[0])][0]) ** 0.5))
    print(markdown(r))


if __name__ == "__main__":
    main()
