# The kstream app image: `docker compose up` runs topologies.wordcount against the kafka service.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KSTREAM_STATE_DIR=/tmp/kstream-state

WORKDIR /app
COPY . .
RUN pip install . \
 && useradd --create-home --uid 10001 kstream
USER kstream

CMD ["kstream", "run", "topologies.wordcount:app", "--bootstrap-servers", "kafka:9092"]
