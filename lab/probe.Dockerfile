# The probe as a compose service (build context: the repository root).
FROM python:3.11-slim-bookworm
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY probe ./probe
COPY profiles ./profiles
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
CMD ["iotprobe", "--help"]
