"""LLM-judge scoring throughput: one-call-at-a-time loop vs the concurrent, cached scorer.

Starts the loopback OpenAI-compatible server (``judge_assets_tests.fake_openai``) in its own
process with a fixed latency per chat completion, then scores the same prompts (``--n``,
default 2,000 = 1,000 items × both answer orders):

- baseline: the usual recipe, a synchronous ``openai.OpenAI`` client calling one prompt after
  another (``--baseline-n`` of them, default all);
- ``score_items`` at each ``--concurrency`` (default 16 and 64), each with a fresh cache.

Prints calls/s, the speed-up over the baseline and the share of the ideal bound
(concurrency / latency). Usage: ``python benchmarks/llm_scoring.py [--n 2000] [--baseline-n 200]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai  # noqa: E402
import pandas as pd  # noqa: E402

from judge_assets.core.scoring.llm_judge import (  # noqa: E402
    JudgeConfig,
    default_judge,
    map_top_logprobs,
    render_messages,
    request_body,
    score_items,
)


def make_items(n_items: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"{i}:1:model-x|model-y" for i in range(n_items)],
            "user_turns": [[f"Explain topic number {i} to a curious teenager."] for i in range(n_items)],
            "answers_a": [[f"Topic {i} is about ... (answer by model-x)"] for i in range(n_items)],
            "answers_b": [[f"Here is how topic {i} works ... (answer by model-y)"] for i in range(n_items)],
        }
    )


def baseline(config: JudgeConfig, items: pd.DataFrame, n_prompts: int) -> float:
    """Calls/s of the sequential recipe over the first ``n_prompts`` prompts."""
    client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout)
    judge = default_judge()
    prompts = [(row, swapped) for row in items.to_dict("records") for swapped in (False, True)][:n_prompts]
    started = time.perf_counter()
    for row, swapped in prompts:
        response = client.chat.completions.create(**request_body(config, judge, render_messages(row, swapped, judge)))
        top = response.choices[0].logprobs.content[0].top_logprobs
        map_top_logprobs([{"token": t.token, "logprob": t.logprob} for t in top], judge, swapped)
    client.close()
    return len(prompts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="prompts to score (items × 2 orders)")
    parser.add_argument("--baseline-n", type=int, default=None, help="prompts for the sequential baseline (default --n)")
    parser.add_argument("--latency", type=float, default=0.1, help="server seconds per chat completion")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args(argv)
    items = make_items(args.n // 2)

    server = subprocess.Popen(
        [sys.executable, "-m", "judge_assets_tests.fake_openai", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        base_url = server.stdout.readline().strip()
        config = JudgeConfig(base_url=base_url, model="bench-judge", api_key="bench-key")
        n_base = args.baseline_n or len(items) * 2
        base = baseline(config, items, n_base)
        print(f"loopback server latency {args.latency * 1000:.0f} ms, {len(items) * 2} prompts ({len(items)} items x 2 orders)")
        print(f"{'run':<28}{'prompts':>8}{'wall s':>9}{'calls/s':>10}{'x baseline':>12}{'% of bound':>12}")
        print(f"{'baseline sequential':<28}{n_base:>8}{n_base / base:>9.1f}{base:>10.1f}{1.0:>12.1f}{base * args.latency * 100:>11.0f}%")
        for concurrency in args.concurrency:
            with tempfile.TemporaryDirectory() as tmp:
                run_config = JudgeConfig(
                    base_url=base_url, model="bench-judge", api_key="bench-key", concurrency=concurrency
                )
                scores, stats = score_items(Path(tmp) / "bench.duckdb", items, run_config)
            assert stats.calls_made == len(items) * 2 and (scores["status"] == "ok").all(), stats.as_dict()
            rate = stats.calls_made / stats.wall_s
            bound = concurrency / args.latency
            print(
                f"{f'score_items c={concurrency}':<28}{stats.calls_made:>8}{stats.wall_s:>9.1f}{rate:>10.1f}"
                f"{rate / base:>12.1f}{rate / bound * 100:>11.0f}%"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
