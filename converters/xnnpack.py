"""Can XNNPACK run a quantized .tflite? If not, which op stops it and why.

XNNPACK (LiteRT's default CPU delegate) builds its whole subgraph when the interpreter
allocates tensors; one op whose quantization it cannot express makes the delegate fail to
prepare and the file fail to load, although LiteRT's reference kernels run it. Its limits
(XNNPACK's operator constructors): a convolution's requantization scale
input_scale x weight_scale / output_scale must be in [2^-32, 256) for every channel, and
an ADD's input-to-output scale ratios in [2^-10, 256).
"""
from __future__ import annotations

import os

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
CONV_RANGE = (2.0 ** -32, 256.0)
ADD_RANGE = (2.0 ** -10, 256.0)
MAX_LISTED = 3


def xnnpack_problem(path: str | os.PathLike) -> str | None:
    """None when LiteRT with XNNPACK loads `path`; else one line naming the op(s) and why."""
    from ai_edge_litert.interpreter import Interpreter
    try:
        Interpreter(model_path=str(path)).allocate_tensors()
        return None
    except (RuntimeError, ValueError) as e:
        error = (str(e).strip().splitlines() or [type(e).__name__])[0]
    found = out_of_range_ops(path)
    if not found:
        return f"XNNPACK cannot prepare it ({error})"
    more = f" and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    return f"XNNPACK cannot prepare it: {'; '.join(found[:MAX_LISTED])}{more}"


def out_of_range_ops(path: str | os.PathLike) -> list[str]:
    """'op N TYPE (tensor): why' for every op whose quantization is outside XNNPACK's limits."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}

    def scales(i):
        return np.asarray(tensors[i]["quantization_parameters"]["scales"], np.float64)

    found = []
    for op in interp._get_ops_details():
        name, ins, outs = op["op_name"], [i for i in op["inputs"] if i >= 0], op["outputs"]
        if not outs or not len(scales(outs[0])):
            continue
        out_scale = scales(outs[0])[0]
        where = f"op {op['index']} {name} ({_layer_name(tensors[outs[0]]['name'])})"
        if name in CONV_OPS and len(ins) >= 2 and len(scales(ins[0])) and len(scales(ins[1])):
            ratio = scales(ins[0])[0] * scales(ins[1]) / out_scale
            lo, hi = CONV_RANGE
            if ratio.max() >= hi or ratio.min() < lo:
                found.append(f"{where}: requantization scale {ratio.max():.3g} (XNNPACK needs < {hi:g})"
                             if ratio.max() >= hi else f"{where}: requantization scale {ratio.min():.3g} "
                                                        f"(XNNPACK needs >= 2^-32)")
        elif name == "ADD":
            lo, hi = ADD_RANGE
            ratios = [scales(i)[0] / out_scale for i in ins if len(scales(i))]
            bad = [r for r in ratios if not lo <= r < hi]
            if bad:
                found.append(f"{where}: input/output scale ratio {bad[0]:.3g} (XNNPACK needs [2^-10, 256))")
    return found


def _layer_name(tensor_name: str) -> str:
    """'model/quant_block_2_add/add;...' -> 'block_2_add': the Keras layer of a tensor."""
    parts = tensor_name.split(";")[0].split("/")
    name = parts[-2] if len(parts) > 1 else parts[0]
    return name[len("quant_"):] if name.startswith("quant_") else name
