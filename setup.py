from setuptools import setup

# The jit kernels live in the top-level kernels/ folder but ship inside our
# distribution as diffusion_kernels.kernels: the import name ``kernels`` belongs
# to another project on PyPI.
setup(
    packages=["diffusion_kernels", "diffusion_kernels.kernels"],
    package_dir={"diffusion_kernels": "diffusion_kernels", "diffusion_kernels.kernels": "kernels"},
)
