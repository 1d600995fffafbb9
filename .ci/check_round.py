"""The GPU round's results folder as its dry run left it: every phase ran to exit 0, its files are there,
and no more than the 8 files a device call brings back."""
import re
import sys
from pathlib import Path

folder = Path(sys.argv[1])
files = sorted(p.name for p in folder.iterdir())
log = (folder / "round.log").read_text()
phases = ["gpu_only_tests", "validate", "bench", "cuda_tests"]
problems = [f"{len(files)} files (at most 8): {files}"] if len(files) > 8 else []
for name in ["round.log", "gpu.txt", "gpu_only_tests.log", "validate.log", "bench.log", "cuda_tests.log"]:
    if name not in files:
        problems.append(f"missing {name}")
if not any(f.endswith(".json") for f in files) or not any(f.endswith(".png") for f in files):
    problems.append(f"no bench JSON and PNG among {files}")
for phase in phases:
    if not re.search(rf"\] {phase}: exit 0 after", log):
        problems.append(f"phase {phase} did not exit 0")
if "result : PASS" not in (folder / "validate.log").read_text():
    problems.append("validate did not pass")
if problems:
    sys.exit("GPU round dry run: " + "; ".join(problems))
print(f"GPU round dry run: {len(phases)} phases exit 0, {len(files)} files")
