"""Lab 6: a Triton-style inference server that speaks the KServe v2 (Open Inference) protocol.

The pieces, one module per concept:

- :mod:`.config`: the model configuration (``config.pbtxt``, Triton's field names and meanings);
- :mod:`.repository`: the model repository on disk and the loaded model versions;
- :mod:`.model`: backends (``mlp`` from ``.npz`` weights, ``numpy`` from a ``model.py``);
- :mod:`.instances`: model instances (``instance_group``) executing at the same time;
- :mod:`.batcher`: the dynamic batcher (and :func:`~.batcher.plan_batch`, its decision rule);
- :mod:`.sequence`: the sequence batcher for stateful models;
- :mod:`.ensemble`: ensembles, DAGs of models;
- :mod:`.rate_limiter`: which instance may execute next;
- :mod:`.warmup`: warm-up requests before a model is ready;
- :mod:`.protocol` and :mod:`.http`: the KServe v2 wire format and the HTTP front end;
- :mod:`.stats` and :mod:`.metrics`: Triton's statistics and Prometheus metrics;
- :mod:`.trace`: request tracing (Triton's trace extension, timestamps per request);
- :mod:`.server`: the server, ``serve`` and :class:`~.server.ServerThread`.

>>> from mlsys_lab.serving import ServerThread
>>> with ServerThread(port=0, models=["digits_mlp"]) as srv:      # doctest: +SKIP
...     import tritonclient.http as httpclient
...     client = httpclient.InferenceServerClient(srv.url)
...     client.is_model_ready("digits_mlp")
True
"""

from .batcher import BatchDecision, DynamicBatcher, plan_batch
from .config import ModelConfig, config_from_dict, config_from_text, load_config, parse_pbtxt
from .errors import (ConfigError, InternalError, InvalidArgument, NotFound, PayloadTooLarge, ServingError,
                     Unavailable, Unsupported)
from .request import InferenceRequest, RequestedOutput
from .server import DEFAULT_MODEL_REPOSITORY, InferenceServer, ServerThread, serve
from .trace import TraceSettings, parse_trace_config

__all__ = ["plan_batch", "BatchDecision", "DynamicBatcher", "ModelConfig", "load_config", "config_from_text",
           "config_from_dict", "parse_pbtxt", "InferenceRequest", "RequestedOutput", "InferenceServer",
           "ServerThread", "serve", "DEFAULT_MODEL_REPOSITORY", "ServingError", "ConfigError",
           "InvalidArgument", "NotFound", "PayloadTooLarge", "Unavailable", "Unsupported", "InternalError",
           "TraceSettings", "parse_trace_config"]
