"""Runs an absl `main` so that bad input ends in one line on stderr and exit status 2, never a traceback."""

import errno
import logging as std_logging
import os
import re
import sys
import traceback
from typing import Callable, NoReturn

from absl import app, flags, logging

from overfeat_jax.errors import InputError

# Errors that mean "the user gave us something we cannot use". Anything else is a bug and keeps its traceback.
USER_ERRORS = (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
               FileExistsError)
# OSErrors about the paths or the disk the user chose (a full disk, a read-only mount, a file in the way).
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EACCES,
                         errno.EPERM, errno.ENAMETOOLONG, errno.EFBIG})


# Libraries whose INFO lines (orbax's per-save chatter, tfds' build notes) would bury the progress lines.
_QUIET_LIBRARIES = ('/orbax/', '/tensorflow_datasets/', '/grain/', '/etils/', '/array_record/')
# Their warnings that every normal run prints: tfds naming each embedded-dataset option set, orbax restoring a
# checkpoint item that was saved without its own metadata file, orbax at each save between evaluations (the
# best checkpoint is tracked by the validation error, which only evaluation steps have).
_EXPECTED_WARNINGS = ('Using custom data configuration', 'Metadata file does not exist',
                      'Requested `tracked_metric`; did not provide metrics')


class _LibraryInfoFilter(std_logging.Filter):
  """Drops the libraries' INFO records, and the tracebacks they attach to their errors (the run's own one-line
  error says what failed, e.g. a full disk; the library's message line stays)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if not any(p in record.pathname for p in _QUIET_LIBRARIES):
      return True
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    if record.levelno == std_logging.WARNING and str(record.msg).startswith(_EXPECTED_WARNINGS):
      return False
    return record.levelno >= std_logging.WARNING


def quiet_library_info() -> None:
  """Keeps the libraries' warnings and errors (without tracebacks), drops their INFO lines from the console."""
  logging.get_absl_handler().addFilter(_LibraryInfoFilter())


def _program() -> str:
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'overfeat_jax'


def print_error(message: str, label: str = 'error') -> None:
  """Prints `prog: label: message` as ONE line on stderr (e.g. one unusable input among many; the command
  goes on and exits 2 at the end)."""
  text = ' '.join(str(message).split())  # multi-line messages (absl, ml_collections) become one line
  print(f'{_program()}: {label}: {text}', file=sys.stderr, flush=True)


def _fail(message: str, label: str = 'error') -> NoReturn:
  """Prints `prog: label: message` as ONE line on stderr and exits 2."""
  print_error(message, label)
  sys.exit(2)


def is_user_error(e: BaseException) -> bool:
  return isinstance(e, USER_ERRORS) or (isinstance(e, OSError) and e.errno in USER_ERRNOS)


# What a user should do about the path errors a tool's own folders and files meet (os.makedirs on a file, ...).
_OS_HINTS = {errno.EEXIST: 'a file is where a folder is needed', errno.ENOTDIR: 'a part of the path is a file',
             errno.ENOENT: 'it does not exist', errno.EACCES: 'no permission', errno.EPERM: 'no permission',
             errno.EROFS: 'a read-only file system', errno.ENOSPC: 'the disk is full'}


def describe_os_error(e: BaseException) -> str:
  """One line in plain words for a user's path error (`cannot use PATH: No such file or directory (it does not
  exist)`), instead of Python's `FileExistsError: [Errno 17] File exists: 'PATH'`; `Type: message` for an
  error without a path."""
  path = getattr(e, 'filename', None)
  if path is None:
    return f'{type(e).__name__}: {e}'
  other = getattr(e, 'filename2', None)
  paths = f'{os.fspath(path)} -> {os.fspath(other)}' if other else os.fspath(path)
  hint = _OS_HINTS.get(getattr(e, 'errno', None))
  return f'cannot use {paths}: {getattr(e, "strerror", None) or e}' + (f' ({hint})' if hint else '')


def _describe(e: BaseException) -> str:
  """`Type: message`, with the innermost frame of a config file (user code) when there is one."""
  if isinstance(e, flags.Error):
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if any(line.startswith('Traceback') for line in lines):  # a config file that raised while loading
      return f'{lines[0]} {lines[-1]}'
    return ' '.join(lines)
  if isinstance(e, InputError):
    return str(e)
  if isinstance(e, (AttributeError, KeyError)) and _config_overrides():
    return _unknown_field(e)
  where = ''
  frames = [f for f in traceback.extract_tb(e.__traceback__)
            if 'site-packages' not in f.filename and os.path.abspath(f.filename) != os.path.abspath(__file__)]
  if frames and not isinstance(e, SyntaxError):
    where = f' (at {frames[-1].filename}:{frames[-1].lineno})'
  return f'{type(e).__name__}: {e}{where}'


def _config_overrides() -> list[str]:
  """The `--FLAG.FIELD` parts of the command line's config-file overrides (`--config.x`, `sweep`'s `--sweep.x`)."""
  return [a.split('=', 1)[0] for a in sys.argv[1:] if re.match(r'--\w+\.\w', a)]


def _unknown_field(e: BaseException) -> str:
  """`--config.a.b: the config has no field 'a'; did you mean ...?` from ml_collections' error about an
  override (of any config-file flag: `--config.`, `--sweep.`): a KeyError (or an AttributeError around one)
  whose text is the field's repr and a suggestion."""
  inner = e.args[0] if isinstance(e, AttributeError) and e.args else e
  text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else str(inner)
  field, _, hint = text.partition('\n')
  field = field.strip().strip('\'"')
  overrides = _config_overrides()
  named = [o for o in overrides if field in o.split('.')[1:]] or overrides
  hint = ' '.join(hint.split())
  suggestion = f'; {hint[:1].lower()}{hint[1:]}' if hint else ''
  return f"{', '.join(named)}: the config has no field '{field}'{suggestion}"


def bad_flags(e: Exception) -> NoReturn:
  """One line and exit 2 for a flag error raised outside `parse_flags`: a config flag with a default file
  reads the `--config.FIELD` overrides of `sys.argv` when it is *defined*, i.e. when the module is imported."""
  _fail(_describe(e))


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every failure (an unknown or ill-typed flag, a config file that does not load
  or raises: the config file is the user's code) reported as one line and exit status 2."""
  try:
    rest = flags.FLAGS(argv)
    _check_config_files()
  except Exception as e:  # pylint: disable=broad-except  (nothing here is a bug of ours: it is the input)
    _fail(_name_config_file(argv, _describe(e)))
  return rest


def _name_config_file(argv: list[str], message: str) -> str:
  """Prefixes `--config=PATH: ` when the message does not name the config file the user gave."""
  if re.match(r"Unknown command line flag '(?!config\b)", message):  # another flag: not the config's fault
    return message
  given = [a for a in argv[1:] if a.startswith('--config=')]
  path = given[-1].split('=', 1)[1].split(':', 1)[0] if given else ''
  return f'--config={path}: {message}' if path and path not in message else message


def _check_config_files() -> None:
  """ml_collections defers "config file not found" until the config is first used: surface it now."""
  from ml_collections.config_flags import config_flags  # pylint: disable=g-import-not-at-top
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if isinstance(flag.parser, config_flags.ConfigFileFlagParser) and flag.present:
      try:
        getattr(flag.value, 'keys')
      except OSError as e:
        raise InputError(f'--{flag.name}: {e}') from None


def _exit_on_user_error(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
  def wrapped(argv: list[str]) -> None:
    try:
      main(argv)
    except Exception as e:  # pylint: disable=broad-except
      if not is_user_error(e):
        raise
      try:
        _fail(str(e) if isinstance(e, InputError) else describe_os_error(e))
      finally:
        # The run is over: leave without the interpreter's shutdown, where a library's background threads (an
        # asynchronous checkpoint write that hit a full disk) would print tracebacks after the one line.
        sys.stdout.flush()
        os._exit(2)  # pylint: disable=protected-access
  return wrapped


_HELP_FLAGS = frozenset({'--help', '-help', '-h', '-?', '--helpshort', '--helpfull', '--helpxml'})


INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)
_INTERRUPTED_NOTE = ('(Ctrl-C) stopped; every output already written is complete (written atomically): rerun '
                     'the same command to do the rest')


def exit_interrupted(note: str = _INTERRUPTED_NOTE) -> NoReturn:
  """After a Ctrl-C: `prog: interrupted: note` as one line, then exit 130 without the interpreter's shutdown
  (worker threads may still run and would print tracebacks)."""
  print_error(note, 'interrupted')
  sys.stdout.flush()
  os._exit(INTERRUPTED)  # pylint: disable=protected-access


def run(main: Callable[[list[str]], None], interrupted: str = _INTERRUPTED_NOTE) -> None:
  """`absl.app.run(main)`: user errors (bad files, flags, config values, a full disk) -> one line, exit 2; a
  Ctrl-C -> one line (`interrupted`), exit 130, no traceback (build_dataset and sweep printed
  KeyboardInterrupt tracebacks: field case).

  Every CLI keeps the libraries' warnings but not their INFO chatter (`quiet_library_info`)."""
  quiet_library_info()
  try:
    app.run(_exit_on_user_error(main), flags_parser=parse_flags)
  except KeyboardInterrupt:
    exit_interrupted(interrupted)
  except SystemExit as e:
    # absl exits with 1 after printing the help it was asked for (a success: 0), and on some usage errors (the
    # project promises 2 for every bad input).
    if e.code == 1:
      sys.exit(0 if _HELP_FLAGS & set(sys.argv[1:]) else 2)
    raise
