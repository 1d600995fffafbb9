"""The check both peer comparisons print and count: one line per comparison, FAIL with the gap."""
import torch

FAILURES = []


def check(name, fused, stock, rtol=1.3e-6, atol=1e-5):
    try:
        torch.testing.assert_close(fused, stock, rtol=rtol, atol=atol)
        print(f"ok    {name}")
    except AssertionError as error:
        FAILURES.append(name)
        print(f"FAIL  {name}: {str(error).splitlines()[-2:]}")
