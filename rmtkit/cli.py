"""The ``rmtkit`` command line (also ``python -m rmtkit``).

::

    rmtkit analyze [MODEL] [--randomize] [--mp-fit] [--detx] [--gof [--n-boot B]]
                   [--fit PL|TPL|E_TPL]
                   [--layers ITEM ...] [--min-evals N] [--max-evals N] [--no-pool]
                   [--fix-fingers clip_xmax] [--base BASE] [--lora delta|merged] [--seed N]
                   [--plots DIR] [--report FILE.html] [--out FILE.csv|.nc|.parquet]
                   [--quiet] [--threads N] [--scheduler tcp://HOST:PORT]
    rmtkit describe [MODEL] [--layers ITEM ...] [--min-evals N] [--no-pool]
    rmtkit compare A B [C ...] [--layers ...] [--min-evals N] [--fit ...] [--out FILE.nc|.csv]
                   [--threads N] [--scheduler tcp://HOST:PORT]
    rmtkit report MODEL [MODEL ...] -o REPORT.html [--randomize] [--mp-fit] [--detx] [--fit ...]
                   [--layers ...] [--min-evals N] [--no-layer-figures] [--title TEXT] [--quiet]
    rmtkit sharpen IN.onnx OUT.onnx [--mode zero|clip] [--seed N] [--layers ...]
    rmtkit smooth IN.onnx OUT.onnx [--method detX|alpha_min|rmt|percent] [--percent P]

MODEL defaults to the embedded model (``rmtkit.data_path()``). Exit status: 0 on success, 1 when
the model cannot be read or an option is invalid (one line on stderr, ``rmtkit: error: ...``),
2 for a usage error (argparse), 130 on Ctrl-C. ``RMTKIT_DEBUG=1`` shows tracebacks.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

__all__ = ["main"]


#: seconds to wait for the ``--scheduler`` of a dask cluster to answer
SCHEDULER_TIMEOUT = 10


class _CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _layer_items(values):
    """``--layers`` items: ints stay ints (negative = exclude), the rest are strings."""
    if not values:
        return None
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            out.append(v)
    return out


def _model_arg(value):
    if value is None:
        from rmtkit import data_path

        return str(data_path())
    return value


def _check_input(path: str) -> None:
    if not os.path.exists(path):
        raise _CliError(f"{path}: no such file or folder")


def _add_common(p, *, model_optional: bool, analysis: bool):
    if model_optional:
        p.add_argument(
            "model",
            nargs="?",
            metavar="MODEL",
            help="model file or folder (default: the embedded digits CNN)",
        )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="ITEM",
        help="layer ids, kinds (dense, conv1d, conv2d, embedding) or name patterns; "
        "a leading '!' or a negative id excludes",
    )
    p.add_argument(
        "--min-evals",
        type=int,
        default=None,
        metavar="N",
        help="fit only spectra with at least N eigenvalues (default 50)",
    )
    p.add_argument(
        "--max-evals",
        type=int,
        default=None,
        metavar="N",
        help="skip layers with more than N eigenvalues",
    )
    p.add_argument(
        "--no-pool",
        action="store_true",
        help="one row per convolution slice instead of one pooled spectrum",
    )
    if analysis:
        p.add_argument(
            "--fit",
            choices=("PL", "TPL", "E_TPL"),
            default="PL",
            help="power law (default), truncated power law, or TPL on the peak range",
        )
        p.add_argument(
            "--fix-fingers",
            choices=("clip_xmax",),
            default=None,
            help="refit without the top eigenvalues when they stand apart from the "
            "power law (adds raw_alpha and num_fingers)",
        )
        p.add_argument(
            "--xmin-method",
            choices=("search", "median", "peak"),
            default="search",
            help="xmin: KS search over all candidates (default), the median "
            "eigenvalue (Hill estimator), or a search near the ESD peak",
        )
        p.add_argument(
            "--randomize",
            action="store_true",
            help="add randomized-spectrum metrics and correlation traps",
        )
        p.add_argument("--mp-fit", action="store_true", help="add the Marchenko-Pastur fit")
        p.add_argument("--detx", action="store_true", help="add the detX (ERG) tail")
        p.add_argument(
            "--gof",
            action="store_true",
            help="test whether each tail is a power law at all: CSN bootstrap p-value and "
            "likelihood ratios against lognormal, exponential, stretched exponential, TPL",
        )
        p.add_argument(
            "--n-boot",
            type=int,
            default=None,
            metavar="B",
            help="bootstrap replicates of --gof (default 2500; needs --gof)",
        )
        p.add_argument(
            "--seed", type=int, default=0, help="seed of --randomize and --gof (default 0)"
        )
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            metavar="N",
            help="local worker threads, one layer each (default: all cores, or $RMTKIT_THREADS)",
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run the per-layer work on an existing dask.distributed cluster, "
            "e.g. tcp://host:8786 (the workers must see the model files; "
            "needs rmtkit[dask])",
        )


def _parser() -> argparse.ArgumentParser:
    from rmtkit import __version__

    parser = argparse.ArgumentParser(
        prog="rmtkit",
        description="Heavy-Tailed Self-Regularization metrics of a trained network, from its "
        "weights alone.",
    )
    parser.add_argument("--version", action="version", version=f"rmtkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("analyze", help="per-layer metrics and their summary")
    _add_common(p, model_optional=True, analysis=True)
    p.add_argument("--base", metavar="BASE", help="analyse W - W_base (or a LoRA adapter's base)")
    p.add_argument(
        "--lora",
        choices=("delta", "merged"),
        default="delta",
        help="LoRA adapter folder: analyse the delta (default) or base + delta",
    )
    p.add_argument("--plots", metavar="DIR", help="write the figures (rmtkit.plot) into DIR")
    p.add_argument(
        "--report",
        metavar="FILE",
        help="also write the HTML report (rmtkit.report): one self-contained page",
    )
    p.add_argument("--out", metavar="FILE", help="save the details: .csv, .nc or .parquet")

    p = sub.add_parser("describe", help="the layers that would be analysed (no computation)")
    _add_common(p, model_optional=True, analysis=False)

    p = sub.add_parser(
        "compare",
        help="summaries of several models side by side, and the distances between their weights",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    _add_common(p, model_optional=False, analysis=True)
    p.add_argument("--out", metavar="FILE", help="save all details: .nc or .csv")

    p = sub.add_parser(
        "report",
        help="one self-contained HTML page: summary, sortable layer table, every layer's "
        "figures; several models: side by side, ranked, as a series",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="model files or folders, or .nc analyses; several: a series, in this order",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    p.add_argument("--title", default=None, help="the page's title")
    p.add_argument(
        "--no-layer-figures",
        action="store_true",
        help="leave out the per-layer figures (the slow part)",
    )
    _add_common(p, model_optional=False, analysis=True)

    p = sub.add_parser("sharpen", help="remove correlation traps (SVD sharpening); ONNX out")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument(
        "--mode",
        choices=("zero", "clip"),
        default="zero",
        help="zero the trap components (default) or shrink them to the MP bulk edge",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the randomization that finds the traps: the draw of "
        "`rmtkit analyze --randomize --seed N` (default 0)",
    )
    p.add_argument("--layers", nargs="+", metavar="ITEM", help="which layers (as analyze)")

    p = sub.add_parser("smooth", help="keep the top singular components (SVD smoothing); ONNX out")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument(
        "--method",
        choices=("detX", "alpha_min", "rmt", "percent"),
        default="detX",
        help="components kept per slice: the detX tail (default), the power-law "
        "tail, the MP spikes, or a fraction (--percent)",
    )
    p.add_argument(
        "--percent",
        type=float,
        default=0.2,
        metavar="P",
        help="fraction of components kept with --method percent (default 0.2)",
    )
    p.add_argument("--layers", nargs="+", metavar="ITEM", help="which layers (as analyze)")
    return parser


# ---------------------------------------------------------------------------------------------
# Output helpers.


def _table(details) -> str:
    import pandas as pd

    from rmtkit import table_columns

    df = details.to_dataframe().reset_index(drop=True)
    cols = table_columns(details)
    with pd.option_context(
        "display.width",
        200,
        "display.max_columns",
        40,
        "display.max_rows",
        10_000,
        "display.float_format",
        lambda x: f"{x:.4g}",
    ):
        return df[cols].to_string(index=False)


def _summary_lines(details) -> str:
    from rmtkit import summary

    s = summary(details)
    width = max((len(k) for k in s.data_vars), default=0)
    return "\n".join(f"  {k:<{width}}  {float(v):.4f}" for k, v in s.data_vars.items())


def _save_details(details, out: str, *, allow_parquet: bool = True) -> None:
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".nc", ".parquet"):
        raise _CliError(
            f"{out}: unknown output format {suffix or '(none)'!r}; use .csv, .nc or .parquet"
        )
    if suffix == ".parquet" and not allow_parquet:
        raise _CliError(f"{out}: compare saves .nc or .csv")
    if not path.parent.exists():
        raise _CliError(f"{out}: folder {str(path.parent)!r} does not exist")
    if suffix == ".nc":
        details.to_netcdf(path)
        return
    df = details.to_dataframe().reset_index()
    if suffix == ".csv":
        df.to_csv(path, index=False)
        return
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        try:
            import fastparquet  # noqa: F401
        except ImportError:
            raise _CliError(
                f"{out}: writing parquet needs pyarrow: pip install pyarrow (or save as .csv / .nc)"
            ) from None
    df.to_parquet(path, index=False)


def _analysis_kwargs(args) -> dict:
    from rmtkit import DEFAULT_MIN_EVALS

    if args.n_boot is not None and not args.gof:
        raise _CliError("--n-boot needs --gof (it is the number of bootstrap replicates of --gof)")
    if args.n_boot is not None and args.n_boot < 1:
        raise _CliError(f"--n-boot must be >= 1 (bootstrap replicates of --gof); got {args.n_boot}")
    # no --n-boot: analyze's own default (rmtkit.analysis.options.DEFAULT_N_BOOT)
    n_boot = {} if args.n_boot is None else {"n_boot": args.n_boot}
    return dict(
        layers=_layer_items(args.layers),
        min_evals=DEFAULT_MIN_EVALS if args.min_evals is None else args.min_evals,
        max_evals=args.max_evals,
        pool=not args.no_pool,
        fit=args.fit,
        xmin_method=args.xmin_method,
        fix_fingers=args.fix_fingers,
        randomize=args.randomize,
        mp_fit=args.mp_fit,
        detx=args.detx,
        gof=args.gof,
        **n_boot,
        key=args.seed,
        progress=False if args.quiet else True,
    )


@contextlib.contextmanager
def _execution(args):
    """Where the analyses of a command run: ``--threads`` local workers, or the cluster of
    ``--scheduler`` (a ``distributed.Client``, closed at the end; yields it as the
    ``executor``, else None)."""
    from rmtkit import local_workers

    if args.threads is not None and args.threads < 1:
        raise _CliError(f"--threads must be >= 1; got {args.threads}")
    with local_workers(args.threads) if args.threads else contextlib.nullcontext():
        if args.scheduler is None:
            yield None
            return
        try:
            from distributed import Client
        except ImportError:
            raise _CliError(
                "--scheduler needs dask.distributed: pip install 'rmtkit[dask]'"
            ) from None
        try:
            client = Client(args.scheduler, timeout=SCHEDULER_TIMEOUT)
        except OSError as err:
            raise _CliError(f"--scheduler {args.scheduler}: cannot connect ({err})") from None
        with client:
            yield client


# ---------------------------------------------------------------------------------------------
# Commands.


def _cmd_analyze(args) -> int:
    from rmtkit import analyze

    model = _model_arg(args.model)
    _check_input(model)
    if args.base is not None:
        _check_input(args.base)
    if args.out is not None:
        _save_details_check(args.out)
    if args.report is not None:
        _report_check(args.report)
    plot = None
    if args.plots is not None:
        try:
            from rmtkit import plot
        except ImportError as err:
            raise _CliError(
                f"--plots needs rmtkit.plot and matplotlib ({err}); pip install 'rmtkit[plot]'"
            ) from None
    with _execution(args) as executor:
        details = analyze(
            model, base=args.base, lora=args.lora, executor=executor, **_analysis_kwargs(args)
        )
    print(f"{model}: {details.sizes['layer']} rows")
    print(_table(details))
    print("\nSummary (means over layers, NaN ignored):")
    print(_summary_lines(details))
    if args.out is not None:
        _save_details(details, args.out)
        print(f"\nwrote {args.out}")
    if plot is not None:
        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        plot.plot_model(
            details,
            savefig=folder,
            weights=model if args.base is None else None,
            key=args.seed,  # the analysis's: the randomized ESD and the bootstrap it measured
        )
        _close_figures()
        print(f"wrote figures to {folder}")
    if args.report is not None:
        from rmtkit import report

        report(
            details,
            args.report,
            weights=model,
            key=args.seed,
            progress=False if args.quiet else True,
            base=args.base,
            lora=args.lora,
        )
        print(f"wrote the report {args.report}")
    return 0


def _report_check(path: str) -> None:
    """Fail before the analysis on a report path that cannot be written, or without
    matplotlib."""
    import importlib.util

    target = Path(path)
    if target.is_dir():
        raise _CliError(f"{path}: is a folder; give the HTML file to write")
    if not target.parent.exists():
        raise _CliError(f"{path}: folder {str(target.parent)!r} does not exist")
    if importlib.util.find_spec("matplotlib") is None:
        raise _CliError("the report needs matplotlib: pip install 'rmtkit[plot]'")


def _close_figures():
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def _save_details_check(out: str, allow_parquet: bool = True) -> None:
    """Fail before the analysis on an output path that cannot be written."""
    path = Path(out)
    suffix = path.suffix.lower()
    allowed = (".csv", ".nc", ".parquet") if allow_parquet else (".csv", ".nc")
    if suffix not in allowed:
        raise _CliError(
            f"{out}: unknown output format {suffix or '(none)'!r}; use {', '.join(allowed)}"
        )
    if not path.parent.exists():
        raise _CliError(f"{out}: folder {str(path.parent)!r} does not exist")
    if suffix == ".parquet":
        import importlib.util

        if (
            importlib.util.find_spec("pyarrow") is None
            and importlib.util.find_spec("fastparquet") is None
        ):
            raise _CliError(
                f"{out}: writing parquet needs pyarrow: pip install pyarrow (or save as .csv / .nc)"
            )


def _cmd_describe(args) -> int:
    import pandas as pd

    from rmtkit import DEFAULT_MIN_EVALS, describe

    model = _model_arg(args.model)
    _check_input(model)
    ds = describe(
        model,
        layers=_layer_items(args.layers),
        min_evals=DEFAULT_MIN_EVALS if args.min_evals is None else args.min_evals,
        max_evals=args.max_evals,
        pool=not args.no_pool,
    )
    df = ds.to_dataframe().reset_index(drop=True)
    cols = [
        c
        for c in (
            "layer_id",
            "name",
            "kind",
            "slice_id",
            "N",
            "M",
            "Q",
            "rf",
            "num_evals",
            "warning",
        )
        if c in df.columns
    ]
    print(f"{model}: {len(df)} rows")
    with pd.option_context("display.width", 200, "display.max_rows", 10_000):
        print(df[cols].to_string(index=False))
    return 0


def _names(paths) -> list[str]:
    names, seen = [], {}
    for p in paths:
        stem = Path(p).name
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}#{seen[stem]}")
    return names


def _cmd_compare(args) -> int:
    import numpy as np
    import pandas as pd

    from rmtkit import analyze, concat, model_distances, summary

    if len(args.models) < 2:
        raise _CliError("compare needs at least two models")
    for m in args.models:
        _check_input(m)
    if args.out is not None:
        _save_details_check(args.out, allow_parquet=False)
    names = _names(args.models)
    kwargs = _analysis_kwargs(args)
    with _execution(args) as executor:
        results = {
            name: analyze(m, executor=executor, **kwargs)
            for name, m in zip(names, args.models, strict=True)
        }
    table = pd.DataFrame(
        {
            name: {k: float(v) for k, v in summary(ds).data_vars.items()}
            for name, ds in results.items()
        }
    )
    with pd.option_context("display.width", 200, "display.float_format", lambda x: f"{x:.4f}"):
        print("Summary (means over layers, NaN ignored):")
        print(table.to_string())
    print("\nWeight distances to", names[0], "(layers matched by name; mean over layers):")
    rows = {}
    for name, m in zip(names[1:], args.models[1:], strict=True):
        d = model_distances(args.models[0], m, layers=kwargs["layers"])
        matched = int(np.sum(d["warning"].values == ""))
        rows[name] = {
            "layers_matched": matched,
            **{
                k: float(np.nanmean(d[k].values)) if matched else float("nan")
                for k in ("frobenius", "cosine", "cka")
            },
        }
    with pd.option_context("display.width", 200, "display.float_format", lambda x: f"{x:.4g}"):
        print(pd.DataFrame(rows).T.to_string())
    for name, m in zip(names[1:], args.models[1:], strict=True):
        _print_damage(name, names[0], m, args.models[0], kwargs)
    if args.out is not None:
        _save_details(concat(results, dim="model"), args.out, allow_parquet=False)
        print(f"\nwrote {args.out}")
    return 0


def _cmd_report(args) -> int:
    from rmtkit import report

    for m in args.models:
        _check_input(m)
    _report_check(args.output)
    names = _names(args.models)
    models = dict(zip(names, args.models, strict=True)) if len(names) > 1 else args.models[0]
    kwargs = _analysis_kwargs(args)
    progress = kwargs.pop("progress")
    key = kwargs.pop("key")
    if all(m.lower().endswith(".nc") for m in args.models):
        kwargs = {}  # saved analyses: nothing to analyze
    with _execution(args) as executor:
        if executor is not None:
            kwargs["executor"] = executor
        path = report(
            models,
            args.output,
            key=key,
            title=args.title,
            layer_figures=not args.no_layer_figures,
            progress=progress,
            **kwargs,
        )
    print(f"wrote the report {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


#: columns of the quantization-damage table of ``compare``
_DAMAGE_COLUMNS = [
    "name",
    "quant",
    "alpha_ref",
    "delta_alpha",
    "delta_alpha_weighted",
    "delta_log_spectral_norm",
    "delta_stable_rank",
    "rel_error",
    "error_sigma_mp",
    "error_num_spikes",
    "error_warning",
]


def _print_damage(name, ref_name, model, reference, kwargs) -> None:
    """The per-layer quantization damage of ``model`` against ``reference`` (the first model),
    when ``model`` has quantized layers (``rmtkit.quantization_damage``)."""
    import numpy as np
    import pandas as pd

    from rmtkit import describe, quantization_damage

    rows = describe(model, layers=kwargs["layers"])
    if not np.any(rows["quant"].values != ""):
        return
    d = quantization_damage(
        model,
        reference,
        layers=kwargs["layers"],
        min_evals=kwargs["min_evals"],
        fit=kwargs["fit"],
        progress=kwargs["progress"],
    )
    df = d.to_dataframe().reset_index(drop=True)
    print(
        f"\nQuantization damage of {name} (W_q) against {ref_name} (W), per layer: metric shifts "
        "(delta = W_q - W), ||W_q - W||_F / ||W||_F and the MP fit of W_q - W's spectrum "
        "(spikes: a structured error):"
    )
    with pd.option_context("display.width", 250, "display.float_format", lambda x: f"{x:.4g}"):
        print(df[[c for c in _DAMAGE_COLUMNS if c in df.columns]].to_string(index=False))


def _write_transformed(args, collection) -> int:
    from rmtkit.adapters import onnx as aonnx

    aonnx.save(args.input, collection, args.output)
    return 0


def _check_onnx_pair(args):
    _check_input(args.input)
    if not args.input.lower().endswith(".onnx") or not args.output.lower().endswith(".onnx"):
        raise _CliError(
            f"{args.command} reads and writes ONNX models: IN and OUT must be .onnx "
            f"files (got {args.input!r}, {args.output!r})"
        )
    parent = Path(args.output).resolve().parent
    if not parent.exists():
        raise _CliError(f"{args.output}: folder {str(parent)!r} does not exist")


def _cmd_sharpen(args) -> int:
    from rmtkit import sharpen

    _check_onnx_pair(args)
    coll = sharpen(args.input, args.seed, mode=args.mode, layers=_layer_items(args.layers))
    _write_transformed(args, coll)
    print(f"sharpened {args.input} -> {args.output}")
    return 0


def _cmd_smooth(args) -> int:
    from rmtkit import smooth

    _check_onnx_pair(args)
    coll = smooth(args.input, args.method, percent=args.percent, layers=_layer_items(args.layers))
    _write_transformed(args, coll)
    print(f"smoothed {args.input} -> {args.output}")
    return 0


_COMMANDS = {
    "analyze": _cmd_analyze,
    "describe": _cmd_describe,
    "compare": _cmd_compare,
    "report": _cmd_report,
    "sharpen": _cmd_sharpen,
    "smooth": _cmd_smooth,
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("rmtkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rmtkit analyze | head`
        sys.stderr.close()
        return 0
    except Exception as err:  # one clear line, no traceback (unless RMTKIT_DEBUG)
        if os.environ.get("RMTKIT_DEBUG"):
            raise
        from rmtkit.errors import RmtkitError

        expected = isinstance(err, (_CliError, RmtkitError, OSError, ModuleNotFoundError))
        msg = " ".join(str(err).split()) or type(err).__name__
        if expected:
            print(f"rmtkit: error: {msg}", file=sys.stderr)
        else:
            print(
                f"rmtkit: internal error: {type(err).__name__}: {msg} "
                "(set RMTKIT_DEBUG=1 for the traceback)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
