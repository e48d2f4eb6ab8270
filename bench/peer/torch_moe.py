"""PyTorch eager peer of moekit's layer benchmark: the usual MoE loop over experts with index_add.

Usage: python3 torch_moe.py '{"tokens":4096,"hidden":1024,"experts":8,"topK":2,"ffn":1408,"threads":2,"runs":5}'
Prints one JSON line: {"medianMs": …, "timesMs": [every timed run], "torch": version, "threads": n}.
Forward + backward, f32, CPU.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def main() -> None:
    cfg = json.loads(sys.argv[1])
    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    T, H, E, k, Fh = cfg["tokens"], cfg["hidden"], cfg["experts"], cfg["topK"], cfg["ffn"]
    router = (torch.randn(E, H) * 0.02).requires_grad_()
    w1 = (torch.randn(E, Fh, H) * H ** -0.5).requires_grad_()
    w3 = (torch.randn(E, Fh, H) * H ** -0.5).requires_grad_()
    w2 = (torch.randn(E, H, Fh) * Fh ** -0.5).requires_grad_()
    x = torch.randn(T, H, requires_grad=True)
    dy = torch.randn(T, H)

    def step() -> None:
        probs = (x @ router.T).softmax(dim=-1)
        weights, idx = probs.topk(k, dim=-1)
        y = torch.zeros_like(x)
        for e in range(E):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            xe = x[tok]
            h = F.silu(xe @ w1[e].T) * (xe @ w3[e].T)
            y.index_add_(0, tok, (h @ w2[e].T) * weights[tok, slot, None])
        y.backward(dy)
        for p in (router, w1, w3, w2, x):
            p.grad = None

    step()
    times = []
    for _ in range(cfg.get("runs", 5)):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(json.dumps({"medianMs": times[len(times) // 2], "timesMs": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
