"""The harness every entry script uses: Hydra app + one-line errors for bad input."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydra.errors import CompactHydraException

from ssl4rl.errors import UserError, os_error_message


class OneLineParser(argparse.ArgumentParser):
    """argparse for the ``python -m ssl4rl.<tool>`` commands: a bad argument is one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


_NO_RUN = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "--shell-completion", "-sc")  # nothing runs
_MULTIRUN = ("-m", "--multirun")
_CONFIG_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")  # another config: main() checks


def run_app(script: str, config_name: str, task: Callable[[Any], Any]) -> None:
    """Run ``task(cfg)`` as a Hydra app using ``<repo>/configs/<config_name>.yaml``.

    Every job's settings are validated before anything runs: a single run's, and each job of a ``-m`` sweep
    (``hydra.*`` overrides included); each job validates again as it starts. Bad overrides (unknown group
    option or key, a value of the wrong type or out of its declared range, missing required value), any
    ``UserError`` raised by the task, and OS faults at the output folder (read-only, full, no permission) exit
    with status 2 and one line on stderr.

    A ``-m`` sweep runs on Hydra's joblib launcher by default (``configs/common.yaml``): jobs side by side, as
    many as this process may use CPU cores, each with ``cores // n_jobs`` (so 1) torch/OpenMP/MKL/OpenBLAS
    threads. A job without its own ``out=`` writes to ``<hydra.sweep.dir>/<job number>_<the overrides that vary
    across the sweep>`` (e.g. ``runs/multirun/20261203-101500/1_seed=1``); ``out=`` given but the same for two
    jobs is refused before anything runs. A job that fails prints one line (``error: sweep job #N (...): ...``)
    and the others go on; the sweep then exits nonzero.
    """
    import hydra
    from omegaconf import DictConfig

    from ssl4rl.config import register_configs, validate_config

    register_configs()
    config_dir = (Path(script).resolve().parent.parent / "configs").resolve()
    argv = sys.argv[1:] = _flags_first(sys.argv[1:])
    sweep = None
    if not any(a in _NO_RUN or a.partition("=")[0] in _CONFIG_FLAGS for a in argv):
        sweep = _guard(lambda: prevalidate(config_dir, config_name, argv))
        if sweep is not None:
            sys.argv[1:] = sweep.argv
            if sweep.threads is not None:  # joblib's workers start with this environment
                os.environ.update(dict.fromkeys(_THREAD_VARS, str(sweep.threads)))

    def main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            _sweep_job(cfg, lambda: (validate_config(cfg), task(cfg)), script)
        else:
            _guard(lambda: (validate_config(cfg), task(cfg)))

    app = hydra.main(config_path=str(config_dir), config_name=config_name, version_base=None)(main)
    if sweep is None:
        app()
        return
    stderr, sys.stderr = sys.stderr, _QuietSweepErrors(sys.stderr)
    try:
        app()
    finally:
        sys.stderr = stderr


# --- -m sweeps -----------------------------------------------------------------------------------------------

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_DIRNAME_EXCLUDE = "hydra.job.config.override_dirname.exclude_keys"
_JOBLIB = "JoblibLauncher"


class SweepJobFailed(CompactHydraException):
    """One job of a ``-m`` sweep failed; it has printed its one error line (Hydra marks the job failed, the
    other jobs go on, and the sweep exits with status 1)."""


@dataclass
class Sweep:
    """What ``prevalidate`` learnt of a ``-m`` sweep: its jobs' overrides, the command line to run (with the
    swept keys named for ``hydra.job.override_dirname``) and the threads per job (joblib launcher only)."""

    jobs: list[list[str]]
    argv: list[str]
    threads: int | None


def _cpus() -> int:
    """CPU cores this process may use: joblib's count (affinity and cgroup quotas included)."""
    from joblib import cpu_count

    return max(1, cpu_count())


def _threads_per_job(launcher: Any) -> int | None:
    """Threads for each job of the joblib launcher (``cores // n_jobs``, at least 1); None for other launchers."""
    if not str(launcher.get("_target_", "")).endswith(_JOBLIB):
        return None
    cpus, n_jobs = _cpus(), int(launcher.get("n_jobs") or 1)
    n_jobs = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)  # joblib: -1 is every core, -2 all but one...
    return max(1, cpus // n_jobs)


def _set_threads(n: int) -> None:
    """This process and the processes it starts use ``n`` threads for torch, OpenMP, MKL and OpenBLAS."""
    import torch

    os.environ.update(dict.fromkeys(_THREAD_VARS, str(n)))
    torch.set_num_threads(n)


def _shown_path(path: str) -> str:
    """``path`` relative to the working folder when it lies inside it, else absolute."""
    absolute = Path(path).resolve()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def _job_folder(sweep_dir: str, num: int, override_dirname: str) -> str:
    """``<sweep dir>/<job number>_<overrides>``, the overrides made safe as one folder name (no ``/``; at most
    100 characters: the job number keeps it unique)."""
    name = re.sub(r"[^A-Za-z0-9=,.+_-]+", "_", override_dirname)[:100]
    return os.path.join(sweep_dir, f"{num}_{name}" if name else str(num))


def _sweep_job(cfg: Any, run: Callable[[], Any], script: str) -> None:
    """Run one job of a ``-m`` sweep (in a launcher's worker process): its threads, its own ``out=`` unless the
    job's overrides set one, and one line instead of a traceback when it fails."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hc = HydraConfig.get()
    threads = _threads_per_job(hc.launcher)
    if threads is not None:
        _set_threads(threads)
    task_overrides = list(hc.overrides.task)
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(task_overrides)}
    if "out" in cfg and "out" not in keys:
        cfg.out = _job_folder(str(hc.sweep.dir), hc.job.num, hc.job.override_dirname)
    label = f"sweep job #{hc.job.num} ({hc.job.override_dirname or ' '.join(task_overrides) or 'no overrides'})"
    try:
        run()
    except UserError as e:
        message = str(e)
    except OSError as e:
        message = os_error_message(e) or f"{type(e).__name__}: {e}"
    except MemoryError:
        message = "ran out of memory; run fewer jobs side by side (hydra.launcher.n_jobs=N) or use smaller sizes"
    except KeyboardInterrupt:
        raise
    except Exception as e:  # a crash: the job alone shows the traceback
        first = (str(e).strip().splitlines() or [""])[0]
        message = (f"crashed with {type(e).__name__}: {first}; run this job alone for the traceback: "
                   f"python {_shown_path(script)} {' '.join(task_overrides)}")
    else:
        return
    print(f"error: {label}: {message}", file=sys.stderr, flush=True)
    raise SweepJobFailed("error: one or more sweep jobs failed, each with its error line above (the other jobs "
                         "ran; those that finished kept their outputs)") from None


class _QuietSweepErrors:
    """``sys.stderr`` of the process that launches a sweep: drops the lines Hydra adds when a job failed (the
    first failed job's overrides, the hint to set HYDRA_FULL_ERROR), as each failed job printed its own line."""

    _DROP = ("Error executing job with overrides:", "\nSet the environment variable HYDRA_FULL_ERROR=1")

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if text.startswith(self._DROP) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_VALUE_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-c", "--cfg", "-p", "--package")


def _flags_first(argv: list[str]) -> list[str]:
    """Hydra's flags (with their values) before the overrides, wherever the user put them: Hydra's parser takes
    the overrides as one run of positional arguments."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        if argv[i].startswith("-"):
            takes_value = argv[i] in _VALUE_FLAGS and i + 1 < len(argv)
            flags += argv[i:i + 1 + takes_value]
            i += 1 + takes_value
        else:
            overrides.append(argv[i])
            i += 1
    return flags + overrides


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except UserError as e:
        _fail(str(e))
    except OSError as e:
        message = os_error_message(e)
        if message is None:
            raise
        _fail(message)
    except MemoryError:
        _fail("ran out of memory; use smaller sizes (batch_size, buffer_size, candidates, image_size) "
              "or free memory (outputs written so far are kept)")
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are kept", file=sys.stderr)
        sys.exit(130)


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def prevalidate(config_dir: Path, config_name: str, argv: list[str]) -> Sweep | None:
    """Refuse, in one line, what any job of this command line would choke on: the single run's overrides, or
    every job of a ``-m`` sweep (expanded as Hydra's basic sweeper does), before anything runs. In a sweep,
    jobs that would write to the same ``out=`` are refused too (the second would find the folder in use or
    finished). Returns None for a single run, else the ``Sweep``."""
    overrides = [a for a in argv if a not in _MULTIRUN]
    if len(overrides) == len(argv):
        _prevalidate(config_dir, config_name, overrides)
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except HydraException as e:
        raise UserError(_override_message(e, config_dir, config_name, overrides)) from None
    outs: dict[str, int] = {}
    for i, job in enumerate(jobs):
        shown = " ".join(a for a in job if not a.startswith("hydra."))
        try:
            cfg = _prevalidate(config_dir, config_name, job)
        except UserError as e:
            raise UserError(f"{e} (sweep job {i + 1} of {len(jobs)}: {shown}; no job was run)") from None
        if any(a.partition("=")[0].lstrip("+~") == "out" for a in job):
            out = str(Path(str(cfg.out)).resolve())
            if out in outs:
                raise UserError(
                    f"out={cfg.out} is the same for sweep jobs {outs[out] + 1} and {i + 1} of {len(jobs)}, and the "
                    f"second would be refused; out= must differ per job, e.g. out=runs/x/seed\\${{seed}}, or leave "
                    f"out= unset: each job then writes to <sweep dir>/<job number>_<swept overrides>; no job was run")
            outs[out] = i
    launcher = _launcher(config_dir, config_name, jobs[0])
    if str(launcher.get("_target_", "")).endswith("SlurmLauncher") and shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=slurm submits each job with sbatch, which is not on this machine's PATH; run "
                        "the command on the cluster's login node, or leave out hydra/launcher=slurm to run the jobs "
                        "side by side here")
    return Sweep(jobs, _with_swept_keys(argv, parsed, jobs), _threads_per_job(launcher))


def _with_swept_keys(argv: list[str], parsed: list[Any], jobs: list[list[str]]) -> list[str]:
    """``argv`` plus the keys that do not vary across the jobs as ``hydra.job.override_dirname``'s excluded keys
    (so a job's folder is named by what varies, e.g. ``1_seed=1``), unless the command line sets them itself."""
    if any(o.key_or_group == _DIRNAME_EXCLUDE for o in parsed):
        return argv
    values: dict[str, set[str]] = {}
    for job in jobs:
        for a in job:
            key, _, value = a.partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    fixed = [o.key_or_group for o in parsed if not o.key_or_group.startswith(("hydra.", "hydra/"))
             and len(values.get(o.key_or_group, ())) <= 1]
    if not fixed:
        return argv
    return [*argv, f"{_DIRNAME_EXCLUDE}=[{','.join(repr(k) for k in dict.fromkeys(fixed))}]"]


def _launcher(config_dir: Path, config_name: str, job: list[str]) -> Any:
    """The launcher config (``hydra.launcher``) a sweep of these overrides runs with."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name, overrides=job, return_hydra_config=True).hydra.launcher


def _prevalidate(config_dir: Path, config_name: str, argv: list[str]) -> Any:
    """Compose one job's config the way the entry point will and refuse, in one line, what it would choke on.
    Returns the composed config."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from ssl4rl.config import register_configs, validate_config

    register_configs()

    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise UserError(f"cannot read argument '{arg}'; overrides look like key=value, e.g. seed=1")
        name = key.lstrip("+~")
        valid = _group_options(config_dir, name) if "." not in key else []
        if valid and value not in valid:
            raise UserError(f"unknown {name} '{value}'; valid names: {', '.join(valid)}")
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name, overrides=argv)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(_override_message(e, config_dir, config_name, argv)) from None
    missing = _missing_keys(cfg)
    if missing:
        raise UserError(f"missing required setting {', '.join(missing)}; add e.g. {missing[0]}=<value>")
    try:
        validate_config(cfg)
    except OmegaConfBaseException as e:
        raise UserError(_override_message(e, config_dir, config_name, argv)) from None
    return cfg


def _override_message(e: Exception, config_dir: Path, config_name: str, argv: list[str]) -> str:
    """One line for a rejected override: the cause (bad type or unknown key) and the valid settings."""
    cause = e.__cause__ if e.__cause__ is not None and str(e.__cause__).strip() else e
    lines = str(cause).strip().splitlines() or [type(e).__name__]
    if "LexerNoViableAlt" in lines[0] or "token recognition" in lines[0]:
        bad = next((a for a in argv if not a.isascii()), lines[0].partition(":")[2].strip())
        key, _, value = bad.partition("=")
        hint = " (Hydra reads unquoted values in ASCII only)" if not bad.isascii() else ""
        return (f"cannot parse the override {bad}{hint}; quote the value, e.g. '{key}=\"{value}\"' "
                "(the single quotes are for the shell)")
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.strip().startswith("full_key:")), "")
    first = lines[0].strip()
    if first.startswith("Value "):  # a value of the wrong type
        return f"{full_key}: {first[0].lower() + first[1:]}; give a value of that type"
    if first.startswith("Invalid value") and full_key:  # e.g. a list setting given a single value
        return f"{full_key}={getattr(cause, 'value', '?')}: {first[0].lower() + first[1:]} Give e.g. {full_key}=[1,2]"
    if first.startswith("Key ") and full_key.startswith("hydra."):
        return f"unknown Hydra setting '{full_key}'; --hydra-help lists Hydra's own settings"
    if first.startswith("Key ") and full_key:  # an unknown key inside a typed group
        parent = full_key.rpartition(".")[0]
        groups = [a for a in argv if "." not in a.partition("=")[0]]  # e.g. agent=planet: list that group's settings
        valid = _valid_keys(config_dir, config_name, parent, groups)
        return f"unknown setting '{full_key}'; valid settings{' in ' + parent if parent else ''}: {', '.join(valid)}"
    return f"{first} (settings: {', '.join(_valid_keys(config_dir, config_name))})"


def _group_options(config_dir: Path, group: str) -> list[str]:
    """Options of a config group: YAML files in ``configs/<group>/`` plus structured configs
    registered under ``group`` in Hydra's ConfigStore (e.g. every ``method=``; Hydra's own groups, such as
    ``hydra/launcher``, with those of Hydra and its installed plugins)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.object_type import ObjectType

    if group.startswith("hydra/"):
        import hydra.conf  # noqa: F401  (registers Hydra's own options, e.g. hydra/launcher=basic)
        from hydra.core.plugins import Plugins

        Plugins.instance()  # registers the installed plugins' options (joblib, submitit_slurm, ...)
    names = {p.stem for p in (config_dir / group).glob("*.yaml")} if (config_dir / group).is_dir() else set()
    store = ConfigStore.instance()
    if store.get_type(group) == ObjectType.GROUP:  # e.g. method=, registered by ssl4rl.config
        names |= {n.removesuffix(".yaml") for n in store.list(group)}
    return sorted(names)


def _missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Keys whose value is ``???`` (without resolving interpolations)."""
    from omegaconf import DictConfig, OmegaConf

    out = []
    for key in cfg.keys():
        if key == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            out.append(prefix + str(key))
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            out += _missing_keys(node, f"{prefix}{key}.")
    return out


def _valid_keys(config_dir: Path, config_name: str, under: str = "", overrides: list[str] | None = None) -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        try:
            cfg = compose(config_name, overrides=overrides or [])
        except (HydraException, OmegaConfBaseException):
            cfg = compose(config_name)
    node = OmegaConf.select(cfg, under) if under else cfg
    return [k for k in node.keys() if k != "hydra"] if OmegaConf.is_dict(node) else []


def to_dict(cfg: Any) -> dict[str, Any]:
    """A resolved plain-dict copy of a Hydra/OmegaConf config."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (saved as ``config.yaml`` in each run)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=True)
