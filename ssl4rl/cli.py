"""The harness every entry script uses: Hydra app + one-line errors for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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
    """
    import hydra
    from omegaconf import DictConfig

    from ssl4rl.config import register_configs, validate_config

    register_configs()
    config_dir = (Path(script).resolve().parent.parent / "configs").resolve()
    argv = sys.argv[1:] = _flags_first(sys.argv[1:])
    if not any(a in _NO_RUN or a.partition("=")[0] in _CONFIG_FLAGS for a in argv):
        _guard(lambda: prevalidate(config_dir, config_name, argv))

    def main(cfg: DictConfig) -> None:
        _guard(lambda: (validate_config(cfg), task(cfg)))

    hydra.main(config_path=str(config_dir), config_name=config_name, version_base=None)(main)()


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


def prevalidate(config_dir: Path, config_name: str, argv: list[str]) -> None:
    """Refuse, in one line, what any job of this command line would choke on: the single run's overrides, or
    every job of a ``-m`` sweep (expanded as Hydra's basic sweeper does), before anything runs."""
    overrides = [a for a in argv if a not in _MULTIRUN]
    if len(overrides) == len(argv):
        _prevalidate(config_dir, config_name, overrides)
        return
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except HydraException as e:
        raise UserError(_override_message(e, config_dir, config_name, overrides)) from None
    for i, job in enumerate(jobs):
        try:
            _prevalidate(config_dir, config_name, job)
        except UserError as e:
            shown = " ".join(a for a in job if not a.startswith("hydra."))
            raise UserError(f"{e} (sweep job {i + 1} of {len(jobs)}: {shown}; no job was run)") from None


def _prevalidate(config_dir: Path, config_name: str, argv: list[str]) -> None:
    """Compose one job's config the way the entry point will and refuse, in one line, what it would choke on."""
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
    registered under ``group`` in Hydra's ConfigStore (e.g. every ``method=``)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.object_type import ObjectType

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
