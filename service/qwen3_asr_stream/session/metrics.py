"""Prometheus metrics of one server, in a registry of its own (several servers may share a process).

Names follow the speech-service conventions: active and rejected streams, audio
seconds, first-partial and final latency, and the engine's and the aligner's queues
(read from them at scrape time).
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_streams = Gauge("asr_active_streams", "Streaming calls in progress", registry=r)
        self.streams = Counter("asr_streams", "Finished streaming calls by status code", ["code"], registry=r)
        self.recognize_calls = Counter("asr_recognize_calls", "Finished Recognize calls by status code", ["code"],
                                       registry=r)
        self.rejected = Counter("asr_rejected_streams", "Calls refused at admission", ["reason"], registry=r)
        self.audio_seconds = Counter("asr_audio_seconds", "Audio received, seconds", ["rpc"], registry=r)
        self.utterances = Counter("asr_utterances", "Utterances ended, by reason", ["reason"], registry=r)
        self.results = Counter("asr_results", "Results queued for clients", ["kind"], registry=r)
        self.coalesced = Counter("asr_interim_coalesced", "Interim results replaced by a newer one before they were read",
                                 registry=r)
        self.first_partial_latency = Histogram(
            "asr_first_partial_latency_seconds", "From the start of speech to the first interim result",
            buckets=LATENCY_BUCKETS, registry=r)
        self.final_latency = Histogram(
            "asr_final_latency_seconds", "From the end of an utterance to its final result (with words when asked)",
            buckets=LATENCY_BUCKETS, registry=r)
        self.engine_compute = Histogram("asr_engine_update_seconds", "Engine compute of the batch behind a result",
                                        ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.aligner_seconds = Histogram("asr_aligner_batch_seconds", "Forced-aligner compute per batch",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.speaker_seconds = Histogram("asr_speaker_model_seconds", "Speaker-model compute per final utterance",
                                         buckets=LATENCY_BUCKETS, registry=r)

    def watch(self, name: str, documentation: str, read: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """A gauge read at scrape time: ``read()`` gives (labels, value) pairs."""
        self.registry.register(_CallbackGauge(name, documentation, read))


class _CallbackGauge(Collector):
    def __init__(self, name: str, documentation: str, read) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def describe(self):
        return [GaugeMetricFamily(self.name, self.documentation, labels=())]

    def collect(self):
        samples = list(self.read())
        labels = sorted({k for lab, _ in samples for k in lab})
        family = GaugeMetricFamily(self.name, self.documentation, labels=labels)
        for lab, value in samples:
            family.add_metric([lab.get(k, "") for k in labels], value)
        yield family
