"""Where the command's storages come from: a settings file and command-line options.

A settings file (INI or TOML, picked by its extension; ``.toml`` is TOML,
anything else INI) uses the same section names in both formats::

    [depot]                      # optional
    default = files              # the storage used when -s is not given

    [depot.aliases]              # optional: alias = storage
    avatars = files

    [depot.storages.files]       # one section per storage
    backend = local              # or depot.backend = local
    storage_path = /var/lib/app/files

Each storage section holds the keys :meth:`DepotManager.configure` takes,
with or without their ``depot.`` prefix; in TOML, nested tables are
flattened with dots, so ``depot.backend = "s3"`` works there too.

On the command line, ``--backend NAME=BACKEND``, ``--option NAME.KEY=VALUE``
and ``--local NAME=PATH`` define storages or override the file's keys.

Storages are built only when a command uses them, so a settings file naming
an unreachable S3 bucket does not stop ``depot ls -s files``.
"""
from __future__ import annotations

import configparser
import functools
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

from depot.cli.errors import CLIError, ExitCode
from depot.io.interfaces import FileStorage
from depot.io.registry import BackendNotFoundError
from depot.manager import DepotManager

__all__ = ["Settings", "load_settings", "apply_options", "Storages", "DEFAULT_FILES", "CONFIG_ENV"]

#: Environment variable naming the settings file when ``--config`` is not given.
CONFIG_ENV = "DEPOT_CONFIG"
#: Looked up in the current directory when neither ``--config`` nor the variable is set.
DEFAULT_FILES = ("depot.toml", "depot.ini")

PREFIX = "depot."
SECTION = "depot"
STORAGES = "depot.storages."
ALIASES = "depot.aliases"


@dataclass
class Settings:
    """Storages (name -> ``depot.*`` config dict), aliases and the default name."""

    storages: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    aliases: Dict[str, str] = field(default_factory=dict)
    default: Optional[str] = None
    source: Optional[str] = None


def _prefixed(options: Mapping[str, Any]) -> Dict[str, Any]:
    return {(key if key.startswith(PREFIX) else PREFIX + key): value for key, value in options.items()}


def _flatten(table: Mapping[str, Any], parent: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in table.items():
        name = parent + key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _from_sections(sections: Mapping[str, Mapping[str, Any]], source: str) -> Settings:
    settings = Settings(source=source)
    for name, options in sections.items():
        if name.startswith(STORAGES):
            storage = name[len(STORAGES):]
            if not storage:
                raise CLIError("%s: section [%s] names no storage" % (source, name))
            settings.storages[storage] = _prefixed(options)
        elif name == ALIASES:
            settings.aliases.update({alias: str(target) for alias, target in options.items()})
        elif name == SECTION:
            unknown = sorted(set(options) - {"default"})
            if unknown:
                raise CLIError("%s: unknown key(s) in [depot]: %s" % (source, ", ".join(unknown)))
            default = options.get("default")
            if default is not None and not isinstance(default, str):
                raise CLIError("%s: 'default' in [depot] must be a storage name, not %r" % (source, default))
            settings.default = default
    if not settings.storages:
        raise CLIError("%s defines no storage: add a [depot.storages.NAME] section" % source)
    return settings


def _table(depot: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = depot.get(key, {})
    if not isinstance(value, Mapping):
        raise CLIError("%s: depot.%s must be a table ([depot.%s]), not %s" % (path, key, key, type(value).__name__))
    return value


def _toml_sections(data: Mapping[str, Any], path: str) -> Dict[str, Mapping[str, Any]]:
    depot = data.get(SECTION)
    if not isinstance(depot, Mapping):
        return {}
    sections: Dict[str, Mapping[str, Any]] = {}
    top = {k: v for k, v in depot.items() if k not in ("storages", "aliases")}
    if top:
        sections[SECTION] = top
    for name, table in _table(depot, "storages", path).items():
        if not isinstance(table, Mapping):
            raise CLIError("%s: [depot.storages.%s] must be a table" % (path, name))
        sections[STORAGES + name] = _flatten(table)
    aliases = _table(depot, "aliases", path)
    if aliases:
        sections[ALIASES] = aliases
    return sections


def _read_toml(path: str) -> Dict[str, Mapping[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise CLIError("reading %s needs tomli on Python 3.10: pip install 'depot[cli]'" % path) from None
    with open(path, "rb") as f:
        try:
            return _toml_sections(tomllib.load(f), path)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CLIError("%s is not valid TOML: %s" % (path, exc)) from None


def _read_ini(path: str) -> Dict[str, Mapping[str, Any]]:
    # No interpolation: values such as URLs with %-escapes are taken literally.
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00unused")
    # Keep the keys' case (they are constructor arguments): assigning optionxform is the documented way.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise CLIError("%s is not a valid INI file: %s" % (path, exc)) from None
    return {name: dict(parser.items(name)) for name in parser.sections()}


def load_settings(path: str) -> Settings:
    """Read the settings file ``path`` (TOML if it ends in ``.toml``, INI otherwise)."""
    try:
        sections = _read_toml(path) if path.endswith(".toml") else _read_ini(path)
    except OSError as exc:
        raise CLIError("cannot read settings file %s: %s" % (path, exc.strerror or exc)) from None
    return _from_sections(sections, path)


def find_settings_file(explicit: Optional[str], cwd: str = ".") -> Optional[str]:
    """``--config``, else ``$DEPOT_CONFIG``, else ``depot.toml``/``depot.ini`` if present."""
    if explicit:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env
    for name in DEFAULT_FILES:
        candidate = os.path.join(cwd, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _split_pair(text: str, sep: str, what: str) -> List[str]:
    left, found, right = text.partition(sep)
    if not found or not left:
        raise CLIError("%s must look like %s, got %r" % (what, "NAME%sVALUE" % sep, text))
    return [left, right]


def apply_options(
    settings: Settings,
    backends: Iterable[str] = (),
    options: Iterable[str] = (),
    locals_: Iterable[str] = (),
) -> Settings:
    """Add the storages and keys given with ``--backend``, ``--option`` and ``--local``."""
    for spec in backends:
        name, backend = _split_pair(spec, "=", "--backend")
        settings.storages.setdefault(name, {})[PREFIX + "backend"] = backend
    for spec in locals_:
        name, path = _split_pair(spec, "=", "--local")
        config = settings.storages.setdefault(name, {})
        config[PREFIX + "backend"] = "local"
        config[PREFIX + "storage_path"] = path
    for spec in options:
        key, value = _split_pair(spec, "=", "--option")
        name, dot, option = key.partition(".")
        if not dot or not option:
            raise CLIError("--option must look like NAME.KEY=VALUE, got %r" % spec)
        settings.storages.setdefault(name, {})[_prefixed({option: value}).popitem()[0]] = value
    return settings


class Storages:
    """The storages of one command run, each built on first use.

    They are kept here rather than in :class:`DepotManager`, so that running
    the command in-process leaves the application's registry alone;
    :meth:`register_all` puts them there for ``serve``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: Dict[str, FileStorage] = {}
        for alias, target in settings.aliases.items():
            if target not in settings.storages:
                raise CLIError("alias %r points to %r, which is not a configured storage" % (alias, target))
            if alias in settings.storages:
                raise CLIError("%r is both a storage and an alias" % alias)
        if settings.default is not None and self.resolve(settings.default) is None:
            raise CLIError("default storage %r is not configured" % settings.default)

    @property
    def names(self) -> List[str]:
        """The configured storage names (not aliases), in definition order."""
        return list(self.settings.storages)

    def resolve(self, name: str) -> Optional[str]:
        """The storage ``name`` means (following an alias), or ``None``."""
        if name in self.settings.storages:
            return name
        target = self.settings.aliases.get(name)
        return target if target in self.settings.storages else None

    @property
    def default_name(self) -> str:
        if self.settings.default is not None:
            return self.resolve(self.settings.default) or self.settings.default
        if len(self.settings.storages) == 1:
            return self.names[0]
        if not self.settings.storages:
            raise CLIError(
                "no storage configured: pass --config FILE (or create depot.toml / depot.ini), "
                "or define one with --local NAME=PATH or --backend NAME=BACKEND"
            )
        raise CLIError(
            "several storages are configured (%s): choose one with -s NAME, "
            "or set 'default' in the [depot] section" % ", ".join(self.names)
        )

    def get(self, name: Optional[str] = None) -> FileStorage:
        """The storage ``name`` (an alias is followed; ``None`` is the default), built if needed."""
        wanted = self.default_name if name is None else name
        resolved = self.resolve(wanted)
        if resolved is None:
            known = ", ".join(self.names) or "none"
            raise CLIError("no storage named %r (configured: %s)" % (wanted, known), ExitCode.NOT_FOUND)
        if resolved not in self._built:
            self._built[resolved] = self._build(resolved, DepotManager.from_config)
        return self._built[resolved]

    def _build(self, name: str, factory: Callable[[Mapping[str, Any]], FileStorage]) -> FileStorage:
        try:
            return factory(self.settings.storages[name])
        except (ImportError, BackendNotFoundError, TypeError, ValueError) as exc:
            # Wrong or missing options, an uninstalled extra: the user's to fix.
            raise CLIError("storage %r is misconfigured: %s" % (name, exc)) from exc
        except Exception as exc:
            raise CLIError("storage %r could not be opened: %s" % (name, exc), ExitCode.STORAGE) from exc

    def name_of(self, name: Optional[str]) -> str:
        """The real storage name behind ``name`` (``None``: the default)."""
        wanted = self.default_name if name is None else name
        return self.resolve(wanted) or wanted

    def register_all(self) -> Dict[str, str]:
        """Build every storage and register it (and the aliases) in :class:`DepotManager`.

        A storage that cannot be built does not stop the others: the result
        maps each such name (and the aliases pointing at it) to the reason.
        """
        broken: Dict[str, str] = {}
        for name in self.names:
            try:
                self._built[name] = self._build(name, functools.partial(DepotManager.configure, name))
            except CLIError as exc:
                broken[name] = str(exc)
        for alias, target in self.settings.aliases.items():
            if target in broken:
                broken[alias] = broken[target]
            else:
                DepotManager.alias(alias, target)
        if self.settings.default is not None and self.default_name not in broken:
            DepotManager.set_default(self.default_name)  # otherwise the first one built, as configure() does
        return broken
