"""The three export formats, each written and then read back and checked against the network it
came from before the export counts as written.

- safetensors: a folder with the weights (metadata inside), `model.py` (the architecture's
  source, `standalone.py`) and `load_ticket.py` (`ticket_loader.py`): loads with torch and
  safetensors alone. Checked by loading it as a user would: outputs equal exactly.
- torchscript: one file, `torch.jit.trace` of the network (batch dimension free), the metadata as
  the extra file `lth.ticket.json`. Checked: outputs equal exactly.
- onnx: one file (opset of torch's exporter, batch dimension dynamic), the metadata as
  metadata_props. Checked with onnxruntime: outputs allclose (atol 1e-5).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from lth_sweep.export import ticket_loader
from lth_sweep.export.errors import ExportError
from lth_sweep.export.metadata import METADATA_KEY, as_strings
from lth_sweep.export.standalone import standalone_source

WEIGHTS_FILE, SOURCE_FILE, LOADER_FILE = ticket_loader.WEIGHTS_FILE, "model.py", "load_ticket.py"
SAFETENSORS_ARCHITECTURE = {"source": SOURCE_FILE, "loader": LOADER_FILE}  #: the metadata's "architecture" there
TORCHSCRIPT_EXTRA = f"{METADATA_KEY}.json"
ONNX_ATOL = 1e-5


def _outputs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def write_safetensors(model: nn.Module, cls: type[nn.Module], metadata: dict, images: torch.Tensor, folder: Path) -> None:
    """`folder`: weights.safetensors, model.py, load_ticket.py."""
    source = standalone_source(cls, metadata["model"]["name"])
    metadata = {**metadata, "architecture": SAFETENSORS_ARCHITECTURE}
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata=as_strings(metadata))
    (folder / SOURCE_FILE).write_text(source)
    shutil.copyfile(ticket_loader.__file__, folder / LOADER_FILE)
    try:
        loaded = ticket_loader.load(folder)
    except Exception as error:  # whatever the generated source raises: the export is not usable
        raise ExportError(f"the written export does not load ({type(error).__name__}: {error}); not written") from None
    if not torch.equal(_outputs(loaded, images), _outputs(model, images)):
        raise ExportError("the network loaded from the written safetensors export computes other outputs; not written")


def write_torchscript(model: nn.Module, metadata: dict, images: torch.Tensor, file: Path) -> None:
    with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, which needs torch to load
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        with torch.no_grad():
            traced = torch.jit.trace(model, images[:2], check_trace=False)
        torch.jit.save(traced, str(file), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata, sort_keys=True)})
        loaded = torch.jit.load(str(file))
    if not torch.equal(_outputs(loaded, images), _outputs(model, images)):
        raise ExportError(
            "the traced TorchScript network computes other outputs than the ticket (a data-dependent forward?); not written"
        )


def export_onnx_proto(model: nn.Module, metadata: dict, images: torch.Tensor):
    """The network as an in-memory `onnx.ModelProto` (input `images`, batch dimension dynamic;
    output `logits`) with `metadata` as its metadata_props, checked with onnxruntime."""
    import onnx

    with _quiet_exporter():
        program = torch.onnx.export(
            model, (images[:2],), dynamo=True, verbose=False, input_names=["images"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, as_strings(metadata))
    _check_onnx(proto, model, images)
    return proto


@contextlib.contextmanager
def _quiet_exporter():
    """torch's ONNX exporter narrates its passes: on stdout, in warnings, and as INFO records of
    onnxscript and onnx_ir, which show wherever logging is on at INFO (a notebook, as README's)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _check_onnx(proto, model: nn.Module, images: torch.Tensor) -> None:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about the graph are the exporter's business
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    if not torch.allclose(got, _outputs(model, images), atol=ONNX_ATOL):
        raise ExportError(
            f"the ONNX network's outputs under onnxruntime differ from the ticket's by more than {ONNX_ATOL}; not written"
        )


def write_onnx(model: nn.Module, metadata: dict, images: torch.Tensor, file: Path) -> None:
    file.write_bytes(export_onnx_proto(model, metadata, images).SerializeToString())
