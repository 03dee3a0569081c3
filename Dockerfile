# syntax=docker/dockerfile:1
# The one image every N1V1 pod runs: the RayService's head and workers, and the clusters of the
# RayJobs and the RayCronJob (kuberay/). Build it from the repository root:
#
#     docker build -t n1v1:0.1.0 .
#
# Base image: the official rayproject/ray image whose Ray and Python versions are pyproject.toml's
# pins (ray==2.60.0, Python 3.11). Its tags read {Ray version}[-{Python version}][-{Platform}]
# (the rayproject/ray page on Docker Hub and ray's docker/*/README.md): x.y.z is a Ray release,
# py311 the Python, -cpu the Ubuntu image without CUDA. tests/test_dockerfile.py fails when either
# version here drifts from the pins. The image runs as its user `ray` (uid 1000, gid 100 `users`)
# with Python in /home/ray/anaconda3, which that user owns, so pip installs without root.
#
# The project goes in as a wheel with its pinned dependencies; the application code is baked in,
# so no manifest uses runtime_env.working_dir. tests/test_dockerfile.py runs this file's pip
# commands (every RUN not under `USER root`) in a fresh virtual environment and imports the Serve
# builder and runs every jobs/*.py entry point from outside the source tree.

# -- stage 1: build the wheel from exactly the files it is made of -------------------------------
FROM rayproject/ray:2.60.0-py311-cpu AS wheel
WORKDIR /home/ray/src
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 n1v1 ./n1v1
# The build backend, pinned, so two builds of one commit make the same wheel.
RUN python -m pip install --no-cache-dir setuptools==84.2.1 \
 && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /home/ray/wheels .

# -- stage 2: the runtime image ---------------------------------------------------------------------
FROM rayproject/ray:2.60.0-py311-cpu
LABEL org.opencontainers.image.title="n1v1" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="N1V1 on Ray: Serve app, training and research jobs"

# The Ray image lets `ray` sudo without a password; N1V1's pods never need root, so take it away
# (the pods also set allowPrivilegeEscalation: false, which makes sudo fail regardless).
USER root
RUN sed -i '/^ray ALL=NOPASSWD: ALL$/d' /etc/sudoers
USER 1000:100

# torch first, from PyTorch's CPU-only index: the wheel's `torch==2.13.0` is then satisfied by the
# installed 2.13.0+cpu (a local version label, which == ignores), so pip never pulls PyPI's CUDA
# build (several GB). Everything else comes from PyPI at the wheel's exact pins; Ray itself is
# already in the base image at the pinned version.
COPY --from=wheel --chown=1000:100 /home/ray/wheels /tmp/wheels
RUN python -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.13.0 \
 && python -m pip install --no-cache-dir /tmp/wheels/n1v1-*.whl \
 && rm -rf /tmp/wheels

# The `ray job submit` entry points (python /home/ray/jobs/train.py ...), beside the installed
# package they call.
COPY --chown=1000:100 jobs /home/ray/jobs

# No usage reports leave the cluster (most clusters block that egress anyway).
ENV RAY_USAGE_STATS_ENABLED=0
WORKDIR /home/ray
