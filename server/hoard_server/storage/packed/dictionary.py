"""Zstd dictionary training: small compressible objects compress better with a shared
dictionary, trained once from the first few thousand of them."""

from __future__ import annotations

import logging
import threading

import zstandard

from hoard_server.storage.activity import Activity
from hoard_server.storage.codec import Codec
from hoard_server.storage.index import ObjectIndex

log = logging.getLogger(__name__)

_SAMPLES = 2000
_DICT_SIZE = 64 << 10
_SAMPLE_MIN, _SAMPLE_MAX = 256, 16 << 10


class DictionaryTrainer:
    """Collects samples from puts and, once there are enough, trains a dictionary on a
    background thread, stores it durably and only then lets the codec use it."""

    def __init__(
        self, name: str, index: ObjectIndex, codec: Codec, activity: Activity, level: int
    ) -> None:
        self._name = name
        self._index = index
        self._codec = codec
        self._activity = activity
        self._level = level
        self._samples: list[bytes] = []
        self._lock = threading.Lock()
        self._training = False

    def sample(self, data: bytes) -> None:
        """Offer a small object just stored compressed (cheap when not wanted)."""
        if (
            self._codec.has_dictionary
            or self._training
            or not _SAMPLE_MIN <= len(data) <= _SAMPLE_MAX
        ):
            return
        with self._lock:
            if self._training:
                return
            self._samples.append(data)
            if len(self._samples) < _SAMPLES:
                return
            self._training = True
            samples, self._samples = self._samples, []
        threading.Thread(target=self._train, args=(samples,), daemon=True).start()

    def _train(self, samples: list[bytes]) -> None:
        try:
            with self._activity.hold(reader=False):
                # zstandard's stub wants a list[ByteString], which a list[bytes] is not only
                # because list is invariant; the function just reads the samples
                d = zstandard.train_dictionary(
                    _DICT_SIZE,
                    samples,  # type: ignore[arg-type]
                    level=self._level,
                )
                data = d.as_bytes()
                self._index.put_dictionary(d.dict_id(), data)  # durable before any use
                self._codec.add_dictionary(data)
            log.info("repository %s: trained a %d-byte zstd dictionary", self._name, len(data))
        except Exception as exc:  # training is an optimisation; never fatal
            log.warning("repository %s: dictionary training failed: %s", self._name, exc)
        finally:
            self._training = False
