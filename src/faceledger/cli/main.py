"""The top-level ``faceledger`` group."""

from __future__ import annotations

import os
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from .. import __version__
from .common import CliError, _error_parts


class MainGroup(click.Group):
    """The top-level group: turns service and client errors into ``error: ...`` and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            code, message = _error_parts(exc)
            click.echo(f"error: {code}: {message}", err=True)
            ctx.exit(2)
        except CliError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.code)
        except BotoCoreError as exc:  # no connection to --endpoint, a request boto3 refuses to send, ...
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError as exc:
            if not _stdout_gone():
                click.echo(f"error: {type(exc).__name__}: {exc} (FACELEDGER_DEBUG=1 shows the traceback)", err=True)
                ctx.exit(2)
            ctx.exit(141)  # as a command killed by SIGPIPE: the reader (`| head`) has what it wanted; no message
        except Exception as exc:
            if os.environ.get("FACELEDGER_DEBUG"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc} (FACELEDGER_DEBUG=1 shows the traceback)", err=True)
            ctx.exit(2)


def _stdout_gone() -> bool:
    """True when standard output is a pipe whose reader has closed it (``faceledger audit list | head``: poll
    reports an error on its write end); its descriptor then points at /dev/null, so that the interpreter's last
    flush does not fail a second time."""
    import select
    import sys

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test runner's buffer)
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return gone


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceledger")
def main() -> None:
    """Self-hosted, Rekognition-compatible face recognition.

    Every command but serve works on the local data folder (--data, in-process) or on a running
    server (--endpoint URL), and prints tables, or the raw response with --json.
    """

