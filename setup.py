"""Installs metrix_tf (the pure-Python package)."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(HERE, "metrix_tf", "version.py")) as f:
        scope = {}
        exec(f.read(), scope)
    return scope["__version__"]


setup(
    name="metrix-tf",
    version=_version(),
    description=(
        "Deep metric learning for Keras 3 / TensorFlow with Metrix "
        "(mixup for deep metric learning, ICLR 2022)."
    ),
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["metrix_tf", "metrix_tf.*"]),
    include_package_data=True,
    package_data={"metrix_tf": ["ops/*.so"]},
    install_requires=[
        # The compiled op only loads in the TensorFlow it was built against.
        "tensorflow==2.21.0",
        "keras>=3.12,<3.16",
        "numpy>=1.26",
        "faiss-cpu>=1.8",
        "absl-py>=2.0",
    ],
    extras_require={"test": ["pytest>=8"]},
)
