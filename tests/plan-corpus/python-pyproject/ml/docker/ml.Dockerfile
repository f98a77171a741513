FROM nvidia/cuda:12.4.1-runtime-ubuntu22.04
RUN apt-get update && apt-get install -y python3-pip
COPY requirements/base.txt requirements/gpu.txt /tmp/
RUN python3 -m pip install -r /tmp/base.txt -r /tmp/gpu.txt -c /tmp/constraints.txt
