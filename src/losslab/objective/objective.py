"""The empirical risk as a function of one flat parameter vector.

    L(θ) = (1/n) Σ_i ℓ(f(x_i; θ), y_i)

`Objective` is the only bridge between an ``nn.Module`` and that function: every
analysis in losslab calls its methods and never loads weights into a module itself.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from losslab.data.dataset import Dataset, StreamDataset, as_dataset
from losslab.data.inputs import (
    Inputs,
    arguments,
    call_args,
    cast_inputs,
    count_rows,
    describe,
    inputs_finite,
    leaves,
    map_inputs,
    take_rows,
)
from losslab.data.stream import Stream
from losslab.errors import UserError, check_choice, check_int
from losslab.objective.layout import ParamLayout
from losslab.objective.losses import Loss, resolve_loss
from losslab.objective.modes import determinism_fix, mode_of
from losslab.objective.params import ParamSelection, select_parameters, unused_parameters
from losslab.objective.plan import SequentialPlan

__all__ = [
    "BATCH_PRODUCTS",
    "BLOCK_PATHS",
    "HVP_MODES",
    "MANY_MODES",
    "CurvatureAt",
    "Objective",
    "resolve_device",
    "resolve_dtype",
]

HVP_MODES = ("auto", "reuse", "recompute", "forward")
MANY_MODES = ("auto", "plan", "loop", "vmap")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Bytes of collated items per batch of a streamed objective (its inputs are not in memory
# otherwise): large enough that per-batch overhead is small, small beside the activations.
STREAM_BATCH_BYTES = 32 << 20
# Module outputs per batch when the batch size is automatic on CPU. Big batches spill the
# caches: resnet20 on 2,048 Fashion-MNIST rows (1.77 MB of outputs per row, 2 threads), one
# Hessian product ('reuse', all rows) took 7.3–9.0 s in batches of 75 rows and 14.4–17.7 s in
# batches of 1,024–2,048 (two runs), a forward 0.94–1.11 s at 75 rows and 1.34–2.03 s in one batch
# (`python benchmarks/scale.py --part batch_sizes`; benchmarks/RESULTS.md, ResNet scale). The
# zoo's ViT (0.68 MB per row) gave the same picture in earlier probes. 128 MiB gives 75, 198
# and 87 rows for resnet20, that ViT and vgg9. CUDA is not capped: not measured there (no GPU
# was lent).
CPU_BATCH_BYTES = 128 << 20
_STOCHASTIC = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """float32 by default; float64 on request ('float64' or torch.float64)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        check_choice(dtype, "dtype", "Objective", _DTYPES)
        return _DTYPES[dtype]
    if dtype not in _DTYPES.values():
        raise UserError(f"The 'dtype' parameter must be float32 or float64. Got {dtype}.")
    return dtype


def resolve_device(device: torch.device | str | None) -> torch.device:
    """CPU by default; 'cuda' where CUDA exists, with a clear error where it does not."""
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise UserError(f"The 'device' parameter must be 'cpu' or 'cuda[:i]'. Got {device!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("The device 'cuda' was asked for but CUDA is not available here: use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"The 'device' parameter must be 'cpu' or 'cuda[:i]'. Got {str(device)!r}.")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if device.index is None else device.index
        if not 0 <= index < count:
            raise UserError(f"The device {str(device)!r} does not exist here: use cuda:0 to cuda:{count - 1}.")
        _float32_without_tf32()
        # with its index, so that 'cuda' and 'cuda:0' compare equal wherever devices are compared
        return torch.device("cuda", index)
    return torch.device("cpu")


def _float32_without_tf32() -> None:
    """float32 means float32 on CUDA too: TF32 (10-bit mantissas) is turned off for this process.

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and newer GPUs (about 1e-3
    relative error), which would put float32 results outside the rounding that the certificates
    and the float64 comparisons assume; matmuls are set to 'highest' precision for the same reason.
    """
    if hasattr(torch.backends.cudnn, "fp32_precision"):  # torch ≥ 2.9: mixing this with the old flags is an error
        for backend in (torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
            backend.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


class Objective:
    """L(θ) = (1/n) Σ ℓ(f(x_i; θ), y_i) of a model, a loss and data, over a flat θ ∈ R^D.

    Parameters
    ----------
    model : the network; it is copied (to ``dtype`` and ``device``), never modified.
    loss : 'cross_entropy', 'mse' or 'bce' (normalizations in `losslab.objective.losses`),
        or a callable ``fn(output, target)`` returning per-example losses or their mean.
    data : a `Dataset` (its ``split`` is used), ``(X, y)`` tensors, a torch Dataset or a
        DataLoader (`losslab.as_dataset`). ``X`` may be a tensor, a tuple of tensors (the model is
        called ``model(*X)``) or a dict of them (``model(**X)``; `losslab.data.inputs`). A large
        torch Dataset and a DataLoader are streamed: read batch by batch, never held whole, with
        the same numbers (``streamed``; analyses that need all inputs at once then say so).
    dtype : float32 (default) or float64; parameters, buffers and floating data are cast to it
        (integer inputs such as token ids keep their dtype).
    device : 'cpu' (default) or 'cuda'.
    batch_size : rows per forward pass; results do not depend on it (sums are divided
        by n once). Default: every row at once if that fits ``memory_budget`` and, on CPU,
        at most ``CPU_BATCH_BYTES`` (128 MiB) of module outputs per batch, where larger
        batches measured 1.6–2.4× slower (caches).
    check_determinism : fail unless the same θ gives the same loss twice and each
        example's output is independent of its batch (catches dropout, train-mode batch
        norm and random augmentation).
    check_finite : fail when a loss, gradient or Hessian-vector product is not finite.
    memory_budget : bytes of activations a batched call may hold (chunks follow from it).
    hvp_mode : 'reuse' keeps the gradient graph at θ and runs only the second backward
        per product (PyHessian's scheme); 'recompute' redoes forward and backward each
        time; 'forward' is forward-over-reverse (``jvp`` of ``grad``). 'auto' picks by
        measurement per device (`benchmarks/hvp.py`).
    many_mode : how `loss_many` evaluates a block of points: 'plan' (fused batched MLP,
        Sequential MLPs only), 'loop' (one point at a time) or 'vmap'. 'auto' picks by
        measurement per device (`benchmarks/hvp.py`, `benchmarks/surface_plane.py`).
    params : which parameters θ holds: 'trainable' (default: ``requires_grad=True``),
        'all', a list of names, or ``fn(name, parameter) -> bool``. The others stay fixed
        at the model's values (`losslab.objective.params`); ``param_names`` lists θ's
        tensors, ``frozen`` the others, ``params_summary`` both for a run's record.

    The model is evaluated in the mode it is in (``mode``: 'eval', 'train' or 'mixed');
    `losslab.build_model` returns models in eval mode, and `losslab.train` switches to
    train mode for its minibatch steps only.

    >>> import torch
    >>> X = torch.randn(20, 3, dtype=torch.float64); y = torch.randn(20, 1, dtype=torch.float64)
    >>> obj = Objective(torch.nn.Linear(3, 1, bias=False), "mse", (X, y), dtype="float64")
    >>> H = obj.hessian(obj.theta0)  # ½‖Xw − y‖²/n has Hessian XᵀX/n
    >>> bool(torch.allclose(H, X.T @ X / 20))
    True
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | Loss | Callable[..., torch.Tensor] = "cross_entropy",
        data: Dataset | tuple[torch.Tensor, torch.Tensor] | Any = None,
        *,
        split: str = "train",
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
        check_determinism: bool = True,
        check_finite: bool = True,
        memory_budget: int = 1 << 30,
        hvp_mode: str = "auto",
        many_mode: str = "auto",
        params: ParamSelection = "trainable",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(
                f"The 'model' parameter of Objective must be a torch.nn.Module. Got {type(model).__name__}."
            )
        if data is None:
            raise UserError("Objective needs data: pass a losslab Dataset, (X, y) tensors or a torch Dataset.")
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.check_determinism = check_determinism
        self.check_finite = check_finite
        self.memory_budget = check_int(memory_budget, "memory_budget", "Objective", low=1 << 20)
        self.hvp_mode = check_choice(hvp_mode, "hvp_mode", "Objective", HVP_MODES)
        self.many_mode = check_choice(many_mode, "many_mode", "Objective", MANY_MODES)
        self.model = copy.deepcopy(model).to(device=self.device, dtype=self.dtype)
        self.subsampled: tuple[Objective, int, int, int] | None = None  # set by `subsample`
        self._bind(as_dataset(data), split)
        self.loss_fn = resolve_loss(loss, classification=not self._head(1)[1].is_floating_point())
        names, self._params_how = select_parameters(self.model, params)  # before requires_grad is cleared
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layout = ParamLayout.of(self.model, names)
        self.param_names = self.layout.names
        self.frozen = tuple(n for n, _ in self.model.named_parameters() if n not in set(names))
        self.dim = self.layout.dim
        self.buffers = dict(self.model.named_buffers())
        self.theta0 = self.layout.flatten(self.model).clone()
        self.mode = mode_of(self.model)
        self._plan = SequentialPlan.of(self.model, self.layout)
        self._trained: tuple[tuple[torch.Tensor, dict[str, torch.Tensor]], ...] = ()  # see `as_theta`
        if self._stream is None:
            self._check_data(self._X, self._y)
        self._bytes_per_row = self._check_model()
        head = arguments(self._call, self._head(4)[0])
        self.unused_params = unused_parameters(self.model, names, self.buffers, *head)
        if self.unused_params:
            shown = ", ".join(repr(n) for n in self.unused_params[:3]) + (" …" if len(self.unused_params) > 3 else "")
            warnings.warn(
                f"The model's outputs do not depend on the parameters {shown}: they get no gradient and add "
                "zero eigenvalues to the Hessian. Freeze them (requires_grad_(False)) or pass params= without them.",
                UserWarning,
                stacklevel=2,
            )
        loader_batch = None if self._stream is None else self._stream.batch_size
        if loader_batch is not None:  # a DataLoader reads its own batches
            if batch_size not in (None, loader_batch):
                raise UserError(
                    f"The DataLoader reads batches of {loader_batch} rows, so batch_size={batch_size} cannot apply: "
                    "pass batch_size=None or build the DataLoader with the batch size you want."
                )
            batch_size = loader_batch
        self._auto_batch = batch_size is None
        if batch_size is None:
            rows = self._auto_rows()
            if self._stream is not None:  # a batch's items, their collated copy and its cast stay small
                rows = min(rows, STREAM_BATCH_BYTES // max(1, self._stream.item_bytes))
            batch_size = max(1, min(self.n, rows))
        self.batch_size = check_int(batch_size, "batch_size", "Objective", low=1)

    # ------------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return (
            f"Objective({type(self.model).__name__}, loss={self.loss_fn.name!r}, n={self.n}, "
            f"D={self.dim}, dtype={self.dtype}, device={self.device})"
        )

    @property
    def is_classification(self) -> bool:
        return self.loss_fn.correct is not None

    def on(
        self, data: Dataset | tuple[torch.Tensor, torch.Tensor] | Any = None, *, split: str | None = None
    ) -> Objective:
        """The same model and settings on other data (or another split of the same data)."""
        other = copy.copy(self)
        other.subsampled = None  # `subsample` sets it again for its own copies
        other._bind(self.dataset if data is None else as_dataset(data), split or self.split)
        if data is not None:
            if other._stream is None:
                other._check_data(other._X, other._y)
            other._check_model()
        return other

    def _bind(self, dataset: Dataset | StreamDataset, split: str) -> None:
        """Point this objective at ``dataset``'s ``split``: tensors on the device, or a `Stream`."""
        self.dataset, self.split = dataset, split
        source = dataset.split(split)
        if isinstance(source, Stream):
            self._stream: Stream | None = source
            self._X: Inputs | None = None
            self._y: torch.Tensor | None = None
            self.n = len(source)
        else:
            self._stream = None
            self._X, self._y = self._cast(*source)
            self.n = count_rows(self._X, dataset.name)
            if self.n == 0:
                raise UserError(f"The {split} split of {dataset.name!r} is empty: give at least one example.")
        head = self._head(1)[0]
        self._call = call_args(self.model, head)

    def _cast(self, X: Inputs, y: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[Inputs, torch.Tensor]:
        """Floating data in ``dtype`` (this objective's by default), integers as they are, on the device."""
        dtype = dtype or self.dtype
        return cast_inputs(X, self.device, dtype), y.to(self.device, dtype if y.is_floating_point() else y.dtype)

    def _check_data(self, X: Inputs, y: torch.Tensor, *, values: bool = True) -> None:
        """Fail on NaN/inf in the data (``values``) or class labels beyond the model's outputs."""
        if values and (not inputs_finite(X) or (y.is_floating_point() and not torch.isfinite(y).all())):
            raise UserError(f"The data {self.dataset.name!r} contains NaN or inf: clean or impute it first.")
        classes = self.__dict__.get("_classes")
        if classes is not None and len(y) and int(y.max()) >= classes:
            raise UserError(
                f"The model outputs {classes} logits but the targets of {self.dataset.name!r} contain class "
                f"{int(y.max())}: give the model's last layer {int(y.max()) + 1} outputs."
            )

    @property
    def _source(self) -> Any:
        return self._X if self._stream is None else self._stream

    @property
    def streamed(self) -> bool:
        """True when the data are read batch by batch from a torch Dataset (never held whole)."""
        return self._stream is not None

    @property
    def X(self) -> Inputs:
        """The inputs, on this objective's device (floating ones in its dtype)."""
        return self._in_memory()[0]

    @property
    def y(self) -> torch.Tensor:
        """The targets: int64 class indices [n], or float regression targets [n, k]."""
        return self._in_memory()[1]

    def _in_memory(self) -> tuple[Inputs, torch.Tensor]:
        if self._stream is not None:
            raise UserError(
                f"This analysis needs all inputs in memory at once, but the objective streams {self.dataset.name!r} "
                "batch by batch: give (X, y) tensors, or losslab.data.as_dataset(data, stream=False) if they fit."
            )
        return self._X, self._y  # type: ignore[return-value]

    def rows(self, index: torch.Tensor | range | slice) -> tuple[Inputs, torch.Tensor]:
        """(inputs, targets) of the rows ``index``, on this objective's device and dtype."""
        if self._stream is not None:
            index = range(self.n)[index] if isinstance(index, slice) else index
            X, y = self._cast(*self._stream.take(index.tolist() if isinstance(index, torch.Tensor) else index))
            self._check_data(X, y)
            return X, y
        if isinstance(index, range):
            index = slice(index.start, index.stop, index.step)
        return take_rows(self._X, index), self._y[index]  # type: ignore[arg-type, index]

    def _head(self, rows: int) -> tuple[Inputs, torch.Tensor]:
        return self.rows(slice(0, min(self.n, rows)))

    def subsample(self, rows: int, *, seed: int = 0, index: int = 0) -> Objective:
        """The same objective on ``rows`` of its rows: block ``index`` of one seeded permutation.

        Blocks ``0, 1, …`` are disjoint (fixed minibatches), so the spread of a quantity over
        them is the spread from the choice of rows alone. The test split stays whole.
        ``subsampled`` records (the objective this came from, rows, seed, index).
        """
        rows = check_int(rows, "rows", "Objective.subsample", low=1, high=self.n)
        index = check_int(index, "index", "Objective.subsample", low=0)
        seed = check_int(seed, "seed", "Objective.subsample")
        parent = self if self.subsampled is None else self.subsampled[0]
        if parent is not self:
            return parent.subsample(rows, seed=seed, index=index)  # siblings come from the same rows
        if (index + 1) * rows > self.n:
            raise UserError(
                f"Subsample {index + 1} of {rows} rows needs {(index + 1) * rows} distinct rows but "
                f"{self.dataset.name!r} has {self.n}: ask for fewer rows or fewer subsamples."
            )
        if self.split != "train":
            raise UserError("Subsamples are drawn from the train split: subsample that objective, then use .on().")
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))
        chosen = order[index * rows : (index + 1) * rows].sort().values
        other = self.on(self.dataset.subset(chosen))
        other.subsampled = (self, rows, seed, index)
        return other

    def test_objective(self, test: Objective | bool | None = True) -> Objective | None:
        """The objective analyses report beside this one: ``test`` itself when it is an Objective;
        for ``True``, the test split of this data (when this is the train split and a test split exists);
        otherwise None.
        """
        if isinstance(test, Objective):
            return test
        if test and self.dataset.has_test and self.split == "train":
            return self.on(split="test")
        return None

    def with_buffers(self, buffers: dict[str, torch.Tensor]) -> Objective:
        """The same objective with other buffers (batch-norm statistics re-estimated at a new θ).

        ``buffers`` must name every buffer of the model; they are cast to this objective's
        device (and dtype, for floating buffers). The model and data are shared, not copied.
        """
        missing = [k for k in self.buffers if k not in buffers]
        if missing:
            raise UserError(f"The buffers lack {missing[0]!r} of this model: pass every entry of Objective.buffers.")
        other = copy.copy(self)
        other._trained = ()  # buffers given explicitly are the caller's choice: the guard in `as_theta` is for defaults
        other.buffers = {}
        for key in self.buffers:
            value = torch.as_tensor(buffers[key])  # result.buffers hold numpy arrays
            dtype = self.dtype if value.is_floating_point() else value.dtype
            other.buffers[key] = value.to(self.device, dtype)
        return other

    @property
    def params_summary(self) -> dict[str, Any]:
        """Which parameters θ holds, for a run's record: the selection, D, frozen and unused tensors."""
        return {
            "selection": self._params_how,
            "dim": self.dim,
            "tensors": len(self.param_names),
            "frozen": list(self.frozen),
            "unused": list(self.unused_params),
        }

    def as_theta(self, theta: torch.Tensor | nn.Module | dict[str, torch.Tensor], name: str = "θ") -> torch.Tensor:
        """θ as a [D] tensor on this objective's device and dtype, with its length checked.

        Also accepts a module or state_dict with this model's parameter names.

        Batch-norm statistics do not travel inside θ: `losslab.train` keeps the ones it
        accumulated in ``result.buffers`` and registers its final θ with the objective it
        trained, so that using that θ here with the objective's other statistics fails
        with the fix (``objective.with_buffers(result.buffers)``) instead of giving the
        loss of another network.
        """
        theta = self._as_theta(theta, name)
        for trained, buffers in self._trained:
            if torch.equal(trained, theta) and any(not torch.equal(buffers[k], v) for k, v in self.buffers.items()):
                raise UserError(
                    f"{name} was trained with batch norm and its running statistics are in result.buffers, "
                    "not in this objective: evaluate it with objective.with_buffers(result.buffers)."
                )
        return theta

    def _as_theta(self, theta: torch.Tensor | nn.Module | dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if isinstance(theta, (nn.Module, dict)):
            params = dict(theta.named_parameters()) if isinstance(theta, nn.Module) else theta
            missing = [k for k in self.layout.names if k not in params]
            if missing:
                raise UserError(
                    f"{name} lacks the parameter {missing[0]!r} of this model: pass weights of the same architecture."
                )
            for key, shape in zip(self.layout.names, self.layout.shapes, strict=True):
                if tuple(params[key].shape) != tuple(shape):
                    raise UserError(
                        f"{name} has {key!r} of shape {tuple(params[key].shape)} but the model's is {tuple(shape)}: "
                        "pass weights of the same architecture."
                    )
            theta = self.layout.flatten(params)
        if not isinstance(theta, torch.Tensor):
            theta = torch.as_tensor(theta)
        if theta.shape != (self.dim,):
            raise UserError(
                f"{name} has shape {tuple(theta.shape)} but the model has {self.dim} parameters: "
                f"pass a flat vector of length {self.dim} (Objective.theta0 has the right layout)."
            )
        return theta.to(self.device, self.dtype)

    def state_dict(self, theta: torch.Tensor, buffers: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
        """Parameters (θ's, and the frozen ones at their fixed values) and buffers (this objective's,
        or ``buffers``), ready for ``model.load_state_dict``."""
        theta = self.as_theta(theta) if not buffers else self._as_theta(theta, "θ")
        params = {**dict(self.model.named_parameters()), **self.layout.unflatten(theta.detach())}
        chosen = self.buffers if not buffers else {k: torch.as_tensor(buffers[k]) for k in self.buffers}
        state = {**{k: v.clone() for k, v in params.items()}, **{k: v.clone() for k, v in chosen.items()}}
        return {k: state[k] for k in self.model.state_dict()}

    def batches(self, batch_size: int | None = None) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Fixed consecutive batches of the data (views, no copies; read one at a time when streamed)."""
        size = batch_size or self.batch_size
        if self._stream is not None:
            stream = self._stream
            values = not stream.checked  # the values of a stream are checked on its first whole pass
            for X, y in stream.batches(size):
                X, y = self._cast(X, y)
                self._check_data(X, y, values=values)
                yield X, y
            stream.checked = True
            return
        for start in range(0, self.n, size):
            yield self.rows(slice(start, start + size))

    def batch_sum(self, per_batch: Callable[[Inputs, torch.Tensor], Any]) -> Any:
        """Σ over the fixed batches of ``per_batch(X, y)``: a tensor or a tuple of tensors.

        The Objective's one batch loop: the loss, the gradient, every Hessian product mode, the
        GGN and the many-point losses sum their per-batch parts here, in the same batch order,
        and the caller divides by n once (so results do not depend on ``batch_size``).
        """
        total: Any = None
        for X, y in self.batches():
            part = per_batch(X, y)
            if total is None:
                total = part
            elif isinstance(part, tuple):
                total = tuple(a + b for a, b in zip(total, part, strict=True))
            else:
                total = total + part
        return total

    def forward(
        self, theta: torch.Tensor, X: torch.Tensor | None = None, *, buffers: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Model outputs f(X; θ) (all rows of the data when ``X`` is None), in batches."""
        theta = self.as_theta(theta) if buffers is None else self._as_theta(theta, "θ")  # explicit buffers: see above
        if X is None:
            batches: Iterator[Inputs] = (X for X, _ in self.batches())
        else:
            X = cast_inputs(map_inputs(lambda t: t, X), self.device, self.dtype)
            size = self.batch_size
            batches = (take_rows(X, slice(i, i + size)) for i in range(0, count_rows(X), size))
        with torch.no_grad():
            parts = [self._outputs(theta, part, buffers) for part in batches]
        return torch.cat(parts)

    def _outputs(self, theta: torch.Tensor, X: Inputs, buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        params = self.layout.unflatten(theta)
        args, kwargs = arguments(self._call, X)
        return functional_call(self.model, (params, self.buffers if buffers is None else buffers), args, kwargs)

    def _loss_sum(self, theta: torch.Tensor, X: Inputs, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn.sum(self._outputs(theta, X), y)

    # ------------------------------------------------------------------ values
    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """L(θ), a 0-dim tensor."""
        theta = self.as_theta(theta)
        with torch.no_grad():
            total = self.batch_sum(lambda X, y: self._loss_sum(theta, X, y))
        value = total / self.n
        self._finite(value, "loss")
        return value

    def metrics(self, theta: torch.Tensor) -> dict[str, float | None]:
        """Loss and (for classification) accuracy over the data, as Python floats."""
        out = self.metrics_many(self.as_theta(theta)[None])
        return {k: (None if v is None else float(v[0])) for k, v in out.items()}

    def value_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L(θ), ∇L(θ)) in one pass over the data."""
        theta = self.as_theta(theta).detach().requires_grad_(True)

        def part(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            value = self._loss_sum(theta, X, y)
            return value.detach(), torch.autograd.grad(value, theta)[0]

        total, grad = self.batch_sum(part)
        value, grad = total / self.n, grad / self.n
        self._finite(value, "loss")
        self._finite(grad, "gradient")
        return value, grad

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """∇L(θ), a [D] tensor."""
        return self.value_and_grad(theta)[1]

    def batch_loss(self, theta: torch.Tensor, index: torch.Tensor, *, train: bool = False) -> torch.Tensor:
        """Mean loss over the rows ``index`` (differentiable in θ): the trainer's minibatch loss.

        ``train=True`` runs the model in training mode, so batch norm uses batch
        statistics and updates this objective's running buffers.
        """
        X, y = self.rows(index)
        if not train:
            return self._loss_sum(theta, X, y) / len(index)
        was_training = self.model.training
        self.model.train()
        try:
            return self._loss_sum(theta, X, y) / len(index)
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ many points
    def loss_many(self, thetas: torch.Tensor) -> torch.Tensor:
        """L at each row of ``thetas`` [P, D]; returns [P]. Non-finite values are returned, not raised."""
        return self.metrics_many(thetas, accuracy=False)["loss"]  # type: ignore[return-value]

    def metrics_many(self, thetas: torch.Tensor, *, accuracy: bool = True) -> dict[str, torch.Tensor | None]:
        """Loss (and accuracy) at each row of ``thetas`` [P, D], chunked to the memory budget.

        The evaluation path ('plan', 'loop' or 'vmap', see ``many_mode``) changes speed,
        not values: the paths agree to floating-point round-off (tests/test_objective.py).
        """
        thetas = torch.as_tensor(thetas)
        if thetas.ndim != 2 or thetas.shape[1] != self.dim:
            raise UserError(
                f"loss_many needs a [P, {self.dim}] block of parameter points. Got shape {tuple(thetas.shape)}."
            )
        thetas = thetas.to(self.device, self.dtype)
        want_acc = accuracy and self.is_classification
        mode = self.many_path
        fn = self.loss_fn
        if mode == "loop":
            blocks = [thetas[p : p + 1] for p in range(len(thetas))]
            outputs = lambda block, X: self._outputs(block[0], X)[None]  # noqa: E731
            sum_many = lambda out, y: fn.sum(out[0], y)[None]  # noqa: E731
            correct_many = lambda out, y: fn.correct(out[0], y)[None]  # type: ignore[misc]  # noqa: E731
        else:
            chunk = self._points_per_chunk(mode)
            blocks = [thetas[start : start + chunk] for start in range(0, len(thetas), chunk)]
            vmapped = torch.vmap(self._outputs, in_dims=(0, None))
            outputs = self._plan.outputs if mode == "plan" else vmapped  # type: ignore[union-attr]
            sum_many = fn.sum_many or torch.vmap(fn.sum, in_dims=(0, None))
            correct_many = fn.correct_many or torch.vmap(fn.correct, in_dims=(0, None))  # type: ignore[arg-type]

        def part(block: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = outputs(block, X)
            correct = correct_many(out, y).to(self.dtype) if want_acc else torch.zeros(len(block), dtype=self.dtype)
            return sum_many(out, y).to(self.dtype), correct.to(self.device)

        with torch.no_grad():
            parts = [self.batch_sum(lambda X, y, b=block: part(b, X, y)) for block in blocks]
        losses = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=self.dtype, device=self.device)
        correct = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=self.dtype, device=self.device)
        return {"loss": losses / self.n, "accuracy": correct / self.n if want_acc else None}

    @property
    def many_path(self) -> str:
        """The path `metrics_many` takes here: 'plan', 'loop' or 'vmap' ('auto' resolved per device)."""
        mode = self.many_mode
        if mode == "plan" and self._plan is None:
            raise UserError("many_mode='plan' needs an nn.Sequential MLP: use many_mode='auto'.")
        if mode != "auto":
            return mode
        if self._plan is not None:
            return "plan"  # fastest measured on CPU; on CUDA it is one fused bmm chain too
        return "vmap" if self.device.type == "cuda" else "loop"

    def _points_per_chunk(self, mode: str) -> int:
        rows = min(self.batch_size, self.n)
        per_point = max(1, rows * self._bytes_per_row)
        if mode == "plan" and self.device.type == "cpu":
            # Keep a chunk's live activations (a layer's input and output, which is all the
            # plan holds) near the last-level cache, in a multiple of the thread count so
            # bmm's batch splits evenly. The digits MLP holds 1.15 MB per point; on 2 shared
            # cores 8 points per chunk ran 2,890–2,950 points/s, 10 points 3,050, 9 points
            # 2,820–2,840, and the 2 points that counting every module's output gave 2,470.
            live = rows * self._plan.live_width() * self.theta0.element_size()  # type: ignore[union-attr]
            points, threads = max(1, min(64, (10 << 20) // max(1, live))), torch.get_num_threads()
            return points - points % threads if points > threads else points
        return max(1, min(4096, self.memory_budget // per_point))

    # ------------------------------------------------------------------ curvature
    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Hessian-vector product ∇²L(θ) v, a [D] tensor."""
        return self.curvature_at(theta, cache=False).hvp(v)

    def hvp_many(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """∇²L(θ) vᵢ for each row of ``V`` [k, D]; returns [k, D]."""
        return self.curvature_at(theta).hvp_many(V)

    def ggn_vp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Generalized Gauss–Newton product G v = (1/n) Σ Jᵢᵀ ∇²ℓᵢ Jᵢ v (PSD for convex ℓ)."""
        return self.curvature_at(theta, cache=False).ggn(v)

    def curvature_at(self, theta: torch.Tensor, *, cache: bool = True) -> CurvatureAt:
        """Products with ∇²L and the GGN at one θ; keeps the gradient graph when it fits."""
        return CurvatureAt(self, self.as_theta(theta).detach(), cache=cache)

    def _auto_rows(self) -> int:
        """Rows per batch when none is given: a batch's activations, 4× over, within the budget,
        and on CPU within ``CPU_BATCH_BYTES`` of module outputs."""
        rows = self.memory_budget // max(1, 4 * self._bytes_per_row)
        if self.device.type == "cpu":
            rows = min(rows, CPU_BATCH_BYTES // max(1, self._bytes_per_row))
        return rows

    def graph_bytes_per_row(self) -> int:
        """Bytes per data row that the 'reuse' scheme keeps alive, measured once on 16 rows.

        The tensors the gradient-with-graph saves (counted under ``saved_tensors_hooks`` by
        storage, leaving out θ, the data and the buffers, which live anyway) twice over, plus
        one activation per row for a product's own backward pass. Measured on resnet20 with
        256 Fashion-MNIST rows: 2.38 MB saved per row, 1.77 MB of module outputs, and 4.3 MB
        per row of resident memory after the graph and one product; this rule says 6.5 MB, the
        rough 8 × module outputs 14 MB (so it refused the graph at half the rows it fits).
        """
        cached = self.__dict__.get("_graph_row_bytes")
        if cached is not None:
            return cached
        X, y = self._head(16)
        persistent = [self.theta0, *self.buffers.values(), *leaves(self._X), self._y]
        keep = {t.untyped_storage().data_ptr() for t in persistent if isinstance(t, torch.Tensor)}
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in keep:
                saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
            return t

        theta = self.theta0.detach().requires_grad_(True)
        with twice_differentiable(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            torch.autograd.grad(self._loss_sum(theta, X, y), theta, create_graph=True)
        rows = min(self.n, 16)
        self._graph_row_bytes = int(2 * sum(saved.values()) / rows + self._bytes_per_row)
        return self._graph_row_bytes

    def at_float64(self) -> Objective:
        """This objective at float64 (model, data and buffers cast; the same θ layout and settings).

        Curvature certificates compare a float32 product with this one to measure the products'
        own rounding (`losslab.curvature.lanczos`). Built once and kept.
        """
        if self.dtype == torch.float64:
            return self
        cached = self.__dict__.get("_float64")
        # copies made by `on` and `with_buffers` share this attribute: reuse it only for the same data
        if cached is not None and cached[0] is self._source and cached[1] is self.buffers:
            return cached[2]
        other = copy.copy(self)
        other.__dict__.pop("_graph_row_bytes", None)  # measured at this dtype
        wide = torch.float64
        other.dtype = wide
        if self._stream is None:
            other._X, other._y = self._cast(self._X, self._y, wide)  # type: ignore[arg-type]
        other.model = copy.deepcopy(self.model).to(wide)
        other.buffers = {k: (v.to(wide) if v.is_floating_point() else v) for k, v in self.buffers.items()}
        other.theta0 = self.theta0.to(wide)
        if self._auto_batch and self._stream is None:  # rows per batch within the budget at the wider dtype
            other._bytes_per_row = self._bytes_per_row * wide.itemsize // self.dtype.itemsize
            other.batch_size = max(1, min(self.n, other._auto_rows()))
        other._plan = SequentialPlan.of(other.model, other.layout)
        other.__dict__.pop("_float64", None)
        self._float64 = (self._source, self.buffers, other)
        return other

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The dense [D, D] Hessian (D products; for tiny models and tests)."""
        at = self.curvature_at(theta)
        return at.hvp_many(torch.eye(self.dim, dtype=self.dtype, device=self.device))

    # ------------------------------------------------------------------ checks
    def _finite(self, value: torch.Tensor, what: str) -> None:
        if self.check_finite and not bool(torch.isfinite(value).all()):
            if "product" in what:
                hint = (
                    "the loss is not twice differentiable at θ (a kink is fine, a singularity is not) or the "
                    "weights overflow: check the model's operations"
                )
            else:
                hint = "check data and weights for NaN/inf or lower the learning rate that produced θ"
            raise UserError(f"The {what} at this θ is not finite: {hint} (pass check_finite=False to get it anyway).")

    def _check_model(self) -> int:
        """Run the checks that must hold before any number is trusted; return activation bytes per row."""
        if self.check_determinism:
            for name, module in self.model.named_modules():
                if module.training and isinstance(module, _STOCHASTIC) and getattr(module, "p", 0) > 0:
                    raise UserError(
                        f"The model has dropout in training mode ({name or 'model'}), so the same θ gives "
                        "different losses: call model.eval() or pass check_determinism=False."
                    )
                if module.training and isinstance(module, nn.modules.batchnorm._BatchNorm):
                    raise UserError(
                        f"The model has batch norm in training mode ({name or 'model'}), so the loss depends "
                        "on how the data are batched: call model.eval() or pass check_determinism=False."
                    )
        # A few rows, including one with the largest class label so range errors show (a streamed
        # objective checks every batch's labels against the model's width as it reads them).
        index = torch.arange(min(self.n, 4), device=self.device)
        if self._stream is None and not self._y.is_floating_point() and self._y.ndim == 1:  # type: ignore[union-attr]
            index[-1] = self._y.argmax()  # type: ignore[union-attr]
        rows = len(index)
        X, y = self.rows(index)
        sizes: list[int] = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, o: sizes.append(o.numel() if isinstance(o, torch.Tensor) else 0))
            for m in self.model.modules()
        ]
        try:
            with torch.no_grad():
                out = self._outputs(self.theta0, X)
        except Exception as exc:
            integer = isinstance(X, torch.Tensor) and not X.is_floating_point()
            shape = f"of shape {tuple(X.shape)}" if isinstance(X, torch.Tensor) else describe(X)
            hint = (
                " Integer inputs keep their dtype (token ids for nn.Embedding): cast X to float for a model "
                "of real-valued inputs."
                if integer
                else ""
            )
            raise UserError(
                f"The model failed on inputs {shape}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Match the model's input layer to the data.{hint}"
            ) from None
        finally:
            for h in hooks:
                h.remove()
        if not isinstance(out, torch.Tensor):
            raise UserError(f"The model must return a tensor of outputs; it returned {type(out).__name__}.")
        if out.shape[0] != rows:
            raise UserError(
                f"The model returned {out.shape[0]} outputs for {rows} inputs: its output must have the batch first."
            )
        self.loss_fn.check(out, y)
        if self.check_finite and not bool(torch.isfinite(out).all()):
            raise UserError(
                "The model's outputs at its current weights are not finite: check the weights and data for NaN/inf."
            )
        if self.check_determinism and bool(torch.isfinite(out).all()):
            with torch.no_grad():
                again = self._outputs(self.theta0, X)
                parts = torch.cat([self._outputs(self.theta0, take_rows(X, slice(i, i + 1))) for i in range(rows)])
            tol = 1e-4 if self.dtype == torch.float32 else 1e-10
            scale = 1.0 + float(out.abs().max())
            if not torch.allclose(out, again, rtol=0, atol=tol * scale):
                raise UserError(
                    "The same θ gave different outputs twice (dropout, random augmentation or other "
                    f"randomness in forward): {determinism_fix(self.model)}."
                )
            if not torch.allclose(out, parts, rtol=0, atol=tol * scale):
                raise UserError(
                    "An example's output depends on the other examples in its batch (batch statistics, "
                    f"as in train-mode batch norm): {determinism_fix(self.model)}."
                )
        if not y.is_floating_point() and out.ndim == 2:
            self._classes = int(out.shape[1])  # the label range every streamed batch is checked against
        element = torch.finfo(self.dtype).bits // 8
        return max(1, sum(sizes) * element // rows)


@contextmanager
def twice_differentiable() -> Iterator[None]:
    """Attention through kernels with every derivative, for curvature products.

    The fused attention kernels have no double backward on CPU, and the fused encoder-layer fast path
    of ``nn.TransformerEncoderLayer`` (taken in eval mode when no parameter requires grad, as under
    ``torch.func.jvp``) has no forward-mode derivative. The math kernel and the layer's ordinary path
    compute the same function with every derivative.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


class CurvatureAt:
    """Products with the Hessian (and GGN) of an `Objective` at a fixed θ.

    With ``cache`` and the 'reuse' scheme, the first product builds ∇L with its graph
    (create_graph) once; each later product is one backward pass through that graph.
    ``count`` counts the products made (one per vector).
    """

    def __init__(self, objective: Objective, theta: torch.Tensor, *, cache: bool = True) -> None:
        self.objective = objective
        self.theta = theta
        self.cache = cache
        self.count = 0
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mode = self._resolve_mode()

    def _resolve_mode(self) -> str:
        obj = self.objective
        mode = obj.hvp_mode
        if mode != "auto":
            return mode
        if not self.cache or obj.streamed:
            # A streamed objective never reuses: the graph would keep every batch's inputs alive.
            return "recompute"
        # Graph reuse measured fastest on CPU (benchmarks/hvp.py); it needs the graph of
        # every batch in memory at once, else fall back to recomputing it per product.
        fixed = 4 * obj.dim * obj.theta0.element_size()
        if 8 * obj.n * obj._bytes_per_row + fixed <= obj.memory_budget:  # fits even by the rough bound
            return "reuse"
        return "reuse" if obj.n * obj.graph_bytes_per_row() + fixed <= obj.memory_budget else "recompute"

    def _check(self, V: torch.Tensor, many: bool) -> torch.Tensor:
        obj = self.objective
        V = torch.as_tensor(V)
        expected = "[k, D]" if many else "[D]"
        if (many and (V.ndim != 2 or V.shape[1] != obj.dim)) or (not many and V.shape != (obj.dim,)):
            raise UserError(
                f"Hessian products need vectors of shape {expected} with D = {obj.dim}. Got {tuple(V.shape)}."
            )
        return V.to(obj.device, obj.dtype)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """∇²L(θ) v."""
        return self.hvp_many(self._check(v, many=False)[None])[0]

    def hvp_many(self, V: torch.Tensor) -> torch.Tensor:
        """∇²L(θ) vᵢ for each row of V [k, D]."""
        return self.products("hessian", V)

    def ggn(self, v: torch.Tensor) -> torch.Tensor:
        """G v with G = (1/n) Σ Jᵢᵀ ∇²_f ℓᵢ Jᵢ, J the Jacobian of the outputs."""
        return self.ggn_many(self._check(v, many=False)[None])[0]

    def ggn_many(self, V: torch.Tensor) -> torch.Tensor:
        """G vᵢ for each row of V [k, D]."""
        return self.products("ggn", V)

    def products(self, matrix: str, V: torch.Tensor) -> torch.Tensor:
        """M vᵢ for each row of V [k, D], M = (1/n) Σ_batches M_b a matrix of `BATCH_PRODUCTS`.

        A new curvature matrix is one per-batch product ``fn(at, X, y, V) -> Σ_{i∈batch} M_i V``
        registered in `BATCH_PRODUCTS`; batching, accumulation (`Objective.batch_sum`), the 1/n,
        counting and the finiteness check are shared.
        """
        if matrix not in BATCH_PRODUCTS:
            raise UserError(f"The 'matrix' parameter must be one of {', '.join(BATCH_PRODUCTS)}. Got {matrix!r}.")
        V = self._check(V, many=True)
        with twice_differentiable():
            return self._products(matrix, V)

    def _products(self, matrix: str, V: torch.Tensor) -> torch.Tensor:
        obj = self.objective
        self.count += len(V)
        if matrix == "hessian" and self._mode == "reuse":
            # ∇L with its graph over all batches, built once: each product is one backward pass
            theta, grad = self._gradient_graph()
            out = _block(lambda v: torch.autograd.grad(grad, theta, v, retain_graph=True)[0], V, "reuse")
        else:
            out = obj.batch_sum(lambda X, y: BATCH_PRODUCTS[matrix](self, X, y, V)) / obj.n
        obj._finite(out, "Hessian-vector product" if matrix == "hessian" else f"{matrix.upper()}-vector product")
        return out.detach()

    def _gradient_graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graph is None:
            obj = self.objective
            theta = self.theta.detach().requires_grad_(True)
            grad = obj.batch_sum(
                lambda X, y: torch.autograd.grad(obj._loss_sum(theta, X, y), theta, create_graph=True)[0]
            )
            self._graph = (theta, grad / obj.n)
        return self._graph


# How a block of k vectors goes through one product call, per scheme: 'loop' (k calls) or
# 'vmap' (one batched call: ``is_grads_batched`` for a backward pass, ``torch.vmap`` for jvp).
# Measured on the digits MLP (17,610 parameters, 1,438 rows, 1 thread, a busy 2-core machine),
# ms per vector in a block of 5: reuse backward 49 looped vs 89 batched; forward-over-reverse
# 108 looped vs 80 vmapped. Batched backward materializes k copies of every saved activation's
# gradient at once, which costs more than the saved dispatch on CPU.
BLOCK_PATHS = {"reuse": "loop", "recompute": "loop", "forward": "vmap", "ggn": "loop"}


def _block(product: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor, scheme: str) -> torch.Tensor:
    """``product`` applied to each row of V, looped or vmapped as `BLOCK_PATHS` says for ``scheme``."""
    if len(V) > 1 and BLOCK_PATHS[scheme] == "vmap":
        return torch.vmap(product)(V)
    return torch.stack([product(v) for v in V])


def _hessian_batch(at: CurvatureAt, X: torch.Tensor, y: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Σ_{i∈batch} ∇²ℓᵢ V by 'recompute' (double backward) or 'forward' (jvp of grad)."""
    obj = at.objective
    if at._mode == "forward":
        grad_fn = torch.func.grad(lambda t: obj._loss_sum(t, X, y))
        return _block(lambda v: torch.func.jvp(grad_fn, (at.theta,), (v,))[1], V, "forward")
    theta = at.theta.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(obj._loss_sum(theta, X, y), theta, create_graph=True)
    return _block(lambda v: torch.autograd.grad(g, theta, v, retain_graph=True)[0], V, "recompute")


def _ggn_batch(at: CurvatureAt, X: torch.Tensor, y: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Σ_{i∈batch} Jᵢᵀ ∇²_f ℓᵢ Jᵢ V (Schraudolph 2002): jvp through the model, the loss Hessian, vjp back."""
    obj = at.objective
    f = lambda t: obj._outputs(t, X)  # noqa: E731
    outputs, vjp = torch.func.vjp(f, at.theta)
    loss_grad = torch.func.grad(lambda o: obj.loss_fn.sum(o, y))

    def product(v: torch.Tensor) -> torch.Tensor:
        Jv = torch.func.jvp(f, (at.theta,), (v,))[1]
        return vjp(torch.func.jvp(loss_grad, (outputs,), (Jv,))[1])[0]

    return _block(product, V, "ggn")


# Curvature matrices by name: a per-batch product fn(at, X, y, V) -> Σ_{i∈batch} M_i V.
# ('hessian' in the 'reuse' scheme keeps one graph over all batches instead; see `products`.)
BATCH_PRODUCTS: dict[str, Callable[[CurvatureAt, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "hessian": _hessian_batch,
    "ggn": _ggn_batch,
}
