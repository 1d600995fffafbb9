from setuptools import find_packages, setup

# The jit kernels live in the top-level kernels/ folder but ship inside our
# distribution as diffusion_kernels.kernels: the import name ``kernels`` belongs
# to another project on PyPI. Every other package is found under diffusion_kernels/
# (so a new subpackage ships without being listed here); tests/test_packaging.py
# checks the built wheel holds them all.
setup(
    packages=find_packages(include=["diffusion_kernels", "diffusion_kernels.*"]) + ["diffusion_kernels.kernels"],
    package_dir={"diffusion_kernels": "diffusion_kernels", "diffusion_kernels.kernels": "kernels"},
)
